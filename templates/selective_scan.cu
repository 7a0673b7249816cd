// Mamba selective scan: CUDA templates, compiled at run time by NVRTC (through CuPy) with their
// parameters as template arguments. Loader, cache and launchers: templates/selective_scan_cuda.py.
//
// Math, per batch b, channel d (group g = d / (dim / G)) and state n, with h = initial_state or 0:
//   dt_t = delta_t + delta_bias[d]            (then softplus if asked)
//   h_t  = exp(dt_t * A[d,n]) * h_{t-1} + dt_t * B_t[g,n] * u_t
//   y_t  = sum_n C_t[g,n] * h_t + D[d] * u_t  (then * silu(z_t) if z is given)
//
// The file is self-contained on purpose: no #include, so NVRTC needs no header search path and
// the same text compiles under nvcc (CI compile check) and g++ (the CPU emulation test, with
// KERNELGEN_HOST_EMULATION defined). Device-only instructions sit behind __CUDA_ARCH__.

#define KG_LOG2E 1.4426950408889634f
#define KG_FULL_MASK 0xffffffffu

// ---------------------------------------------------------------------------------------------
// Element types: the storage type in memory and conversions to and from fp32 (all math is fp32).
// ---------------------------------------------------------------------------------------------
__device__ __forceinline__ float kg_bits_to_float(unsigned int bits) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(bits);
#else
    float f;
    __builtin_memcpy(&f, &bits, sizeof(f));
    return f;
#endif
}

__device__ __forceinline__ unsigned int kg_float_to_bits(float f) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(f);
#else
    unsigned int bits;
    __builtin_memcpy(&bits, &f, sizeof(bits));
    return bits;
#endif
}

struct Float32 {
    typedef float storage;
    static __device__ __forceinline__ float to_float(float v) { return v; }
    static __device__ __forceinline__ float from_float(float v) { return v; }
};

struct Float16 {
    typedef unsigned short storage;
    static __device__ __forceinline__ float to_float(unsigned short v) {
#if defined(__CUDA_ARCH__)
        float f;
        asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v));
        return f;
#elif defined(KERNELGEN_HOST_EMULATION)
        _Float16 h;
        __builtin_memcpy(&h, &v, sizeof(h));
        return (float)h;
#else
        return 0.f;  // host pass of nvcc: never executed
#endif
    }
    static __device__ __forceinline__ unsigned short from_float(float f) {
#if defined(__CUDA_ARCH__)
        unsigned short v;
        asm("cvt.rn.f16.f32 %0, %1;" : "=h"(v) : "f"(f));
        return v;
#elif defined(KERNELGEN_HOST_EMULATION)
        _Float16 h = (_Float16)f;
        unsigned short v;
        __builtin_memcpy(&v, &h, sizeof(v));
        return v;
#else
        return 0;
#endif
    }
};

struct BFloat16 {
    typedef unsigned short storage;
    static __device__ __forceinline__ float to_float(unsigned short v) {
        return kg_bits_to_float(((unsigned int)v) << 16);  // exact
    }
    static __device__ __forceinline__ unsigned short from_float(float f) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
        unsigned short v;
        asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(v) : "f"(f));
        return v;
#else
        // Round to nearest even, NaN stays NaN.
        unsigned int bits = kg_float_to_bits(f);
        if ((bits & 0x7fffffffu) > 0x7f800000u) return (unsigned short)0x7fc0u;
        bits += 0x7fffu + ((bits >> 16) & 1u);
        return (unsigned short)(bits >> 16);
#endif
    }
};

// ---------------------------------------------------------------------------------------------
// Special functions. One ex2.approx per element and state is the kernel's floor (the SFU is the
// bottleneck on H100), so A is pre-scaled by log2(e) and every exp is a single ex2.
// ---------------------------------------------------------------------------------------------
__device__ __forceinline__ float kg_exp2(float x) {
#if defined(__CUDA_ARCH__)
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
#else
    return exp2f(x);
#endif
}

__device__ __forceinline__ float kg_log2_approx(float x) {
#if defined(__CUDA_ARCH__)
    float y;
    asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
#else
    return log2f(x);
#endif
}

__device__ __forceinline__ float kg_softplus(float x) {
    // log(1 + e^x) with one ex2 and one lg2 and selects, no branch (a branch would fence the
    // scheduler off from overlapping steps): x above 20, e^x itself below -15 (where 1 + e^x rounds
    // to 1 and log1p(e^x) = e^x in fp32).
    const float e = kg_exp2(fminf(x, 20.f) * KG_LOG2E);
    const float log1p_e = kg_log2_approx(1.f + e) * 0.6931471805599453f;
    return x > 20.f ? x : (x < -15.f ? e : log1p_e);
}

__device__ __forceinline__ float kg_silu(float x) {
    // __fdividef: one reciprocal and a multiply (2 ulp), where '/' is an IEEE division of ~10
    // instructions and a slow-path call per element.
    return __fdividef(x, 1.f + kg_exp2(-x * KG_LOG2E));
}

__device__ __forceinline__ float kg_sigmoid(float x) {
    return __fdividef(1.f, 1.f + kg_exp2(-x * KG_LOG2E));
}

// ---------------------------------------------------------------------------------------------
// Loading and storing kItems consecutive elements of one row: 16-byte vectors when the row is
// aligned and all items are in range, else element by element with the tail masked (zeros in).
// ---------------------------------------------------------------------------------------------
template <int kBytes> struct KgVec;
template <> struct KgVec<2> { typedef unsigned short type; };
template <> struct KgVec<4> { typedef unsigned int type; };
template <> struct KgVec<8> { typedef uint2 type; };
template <> struct KgVec<16> { typedef uint4 type; };

template <typename T, int kItems>
struct KgRowIO {
    typedef typename T::storage S;
    static constexpr int kBytes = kItems * (int)sizeof(S);
    static constexpr int kVecBytes = kBytes < 16 ? kBytes : 16;
    static constexpr int kVecs = kBytes / kVecBytes;
    static constexpr int kPerVec = kVecBytes / (int)sizeof(S);
    typedef typename KgVec<kVecBytes>::type V;
    union Pack { V vec; S elems[kPerVec]; };

    // True when rows starting at `base`, `row_elems` elements apart, allow vector access.
    static __device__ __forceinline__ bool aligned(const void* base, long long row_elems) {
        return ((unsigned long long)base % kVecBytes) == 0 &&
               ((unsigned long long)row_elems * sizeof(S)) % kVecBytes == 0;
    }

    // out[i] = ptr[i] for i < valid, 0 beyond. `valid` may be <= 0 or > kItems.
    static __device__ __forceinline__ void load(const S* __restrict__ ptr, int valid, bool vec_ok,
                                                float (&out)[kItems]) {
        if (vec_ok && valid >= kItems) {
            const V* vp = reinterpret_cast<const V*>(ptr);
#pragma unroll
            for (int v = 0; v < kVecs; ++v) {
                Pack pack;
                pack.vec = vp[v];
#pragma unroll
                for (int e = 0; e < kPerVec; ++e) out[v * kPerVec + e] = T::to_float(pack.elems[e]);
            }
        } else {
#pragma unroll
            for (int i = 0; i < kItems; ++i) out[i] = i < valid ? T::to_float(ptr[i]) : 0.f;
        }
    }

    static __device__ __forceinline__ void store(S* __restrict__ ptr, int valid, bool vec_ok,
                                                 const float (&in)[kItems]) {
        if (vec_ok && valid >= kItems) {
            V* vp = reinterpret_cast<V*>(ptr);
#pragma unroll
            for (int v = 0; v < kVecs; ++v) {
                Pack pack;
#pragma unroll
                for (int e = 0; e < kPerVec; ++e) pack.elems[e] = T::from_float(in[v * kPerVec + e]);
                vp[v] = pack.vec;
            }
        } else if (valid >= kItems) {
#pragma unroll
            for (int i = 0; i < kItems; ++i) ptr[i] = T::from_float(in[i]);
        } else {
#pragma unroll
            for (int i = 0; i < kItems; ++i)
                if (i < valid) ptr[i] = T::from_float(in[i]);
        }
    }
};

// One (batch, channel) row of the forward's [batch, dim, L] tensors (contiguous), whether each
// allows 16-byte vector access (`kItems` elements at a time), and the channel's D and delta_bias
// (0 when absent).
template <typename InT, int kItems>
struct KgForwardRow {
    typedef typename InT::storage S;
    typedef KgRowIO<InT, kItems> IO;
    const S* u;
    const S* delta;
    const S* z;      // null without z
    S* out;
    bool u_vec, delta_vec, z_vec, out_vec;
    float D, bias;

    __device__ __forceinline__ KgForwardRow(const S* u_all, const S* delta_all, const S* z_all, S* out_all,
                                            const float* D_all, const float* bias_all, long long row, int d,
                                            int L)
        : u(u_all + row * L), delta(delta_all + row * L), z(z_all ? z_all + row * L : nullptr),
          out(out_all + row * L), u_vec(IO::aligned(u_all, L)), delta_vec(IO::aligned(delta_all, L)),
          z_vec(z_all ? IO::aligned(z_all, L) : false), out_vec(IO::aligned(out_all, L)),
          D(D_all ? D_all[d] : 0.f), bias(bias_all ? bias_all[d] : 0.f) {}
};

// ---------------------------------------------------------------------------------------------
// Building blocks of the forward and backward scans.
//
// A warp owns one (batch, channel) row and walks L in chunks of 32 * kItems timesteps; lane j
// holds timesteps [j * kItems, (j + 1) * kItems) of the chunk. For one state every step is an
// affine map h -> decay * h + input; a lane composes its items' maps in registers, the warp
// combines the 32 lane maps with a shuffle scan (Hillis-Steele, 5 steps), and each lane then
// replays its items from its true start state. One exp per (element, state): a lane's total
// decay is a single ex2 of its summed dt rather than a product.
// ---------------------------------------------------------------------------------------------

// Inclusive scan of affine maps (a, b) over the lanes, lane 0 first: afterwards lane j holds the
// composition of the maps of lanes 0..j (applied in that order).
__device__ __forceinline__ void kg_scan_maps_up(float& a, float& b, int lane) {
#pragma unroll
    for (int offset = 1; offset < 32; offset *= 2) {
        const float prev_a = __shfl_up_sync(KG_FULL_MASK, a, offset);
        const float prev_b = __shfl_up_sync(KG_FULL_MASK, b, offset);
        if (lane >= offset) {
            b = fmaf(a, prev_b, b);
            a *= prev_a;
        }
    }
}

// The same from lane 31 down to lane 0 (the adjoint runs backwards in time): afterwards lane j
// holds the composition of the maps of lanes 31..j.
__device__ __forceinline__ void kg_scan_maps_down(float& a, float& b, int lane) {
#pragma unroll
    for (int offset = 1; offset < 32; offset *= 2) {
        const float next_a = __shfl_down_sync(KG_FULL_MASK, a, offset);
        const float next_b = __shfl_down_sync(KG_FULL_MASK, b, offset);
        if (lane + offset < 32) {
            b = fmaf(a, next_b, b);
            a *= next_a;
        }
    }
}

// dt for the lane's items from the raw delta (in `dt`): + bias, softplus if asked, and 0 at and
// past L so those steps are the identity (decay 1, input 0) and carries pass through. `u` comes
// in as u and leaves as dt * u. Returns the sum of the lane's dt.
template <int kItems>
__device__ __forceinline__ float kg_prepare_dt(float (&dt)[kItems], float (&u)[kItems], float bias,
                                               int softplus, int valid) {
    float dt_sum = 0.f;
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
        float v = dt[i] + bias;
        if (softplus) v = kg_softplus(v);
        v = i < valid ? v : 0.f;
        dt[i] = v;
        u[i] *= v;
        dt_sum += v;
    }
    return dt_sum;
}

// For one state (a2 = A * log2 e): each item's decay and input, and the state entering this lane's
// first item given h_chunk entering the chunk. h_chunk_end gets the state leaving the chunk and
// lane_decay this lane's own total decay.
template <int kItems>
__device__ __forceinline__ float kg_state_into_lane(const float (&dt)[kItems], const float (&dtu)[kItems],
                                                    const float (&bn)[kItems], float a2, float dt_sum,
                                                    float h_chunk, int lane, float (&decay)[kItems],
                                                    float (&input)[kItems], float& h_chunk_end,
                                                    float& lane_decay) {
    float agg_b = 0.f;  // this lane's map h -> agg_a * h + agg_b over its items
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
        decay[i] = kg_exp2(dt[i] * a2);
        input[i] = dtu[i] * bn[i];
        agg_b = fmaf(decay[i], agg_b, input[i]);
    }
    lane_decay = kg_exp2(dt_sum * a2);
    float agg_a = lane_decay;
    kg_scan_maps_up(agg_a, agg_b, lane);
    const float h_end = fmaf(agg_a, h_chunk, agg_b);  // h after this lane's last item
    const float h_in = __shfl_up_sync(KG_FULL_MASK, h_end, 1);
    h_chunk_end = __shfl_sync(KG_FULL_MASK, h_end, 31);
    return lane == 0 ? h_chunk : h_in;
}

// Words packing 2- or 4-byte elements (two a word, the first in the low half): element i as a
// float, and element i's bits loaded from `src` and ORed into its place.
template <typename T>
__device__ __forceinline__ float kg_word_element(const unsigned int* words, int i) {
    typedef typename T::storage S;
    if (sizeof(S) == 2) return T::to_float((S)(unsigned short)(words[i / 2] >> (16 * (i % 2))));
    return kg_bits_to_float(words[i]);
}

template <typename S>
__device__ __forceinline__ void kg_or_element_bits(const S* src, int i, unsigned int* words) {
    unsigned int bits;
    if (sizeof(S) == 2) bits = (unsigned int)*reinterpret_cast<const unsigned short*>(src);
    else bits = *reinterpret_cast<const unsigned int*>(src);
    words[i * (int)sizeof(S) / 4] |= sizeof(S) == 2 ? bits << (16 * (i % 2)) : bits;
}

// Raw loads for prefetching: the row's kItems elements as 32-bit words, converted to float only
// when used. (KgRowIO::load converts inside its vector/scalar branch, which makes the thread wait
// for the data right there: fine for immediate use, fatal for a prefetch.)
template <typename T, int kItems>
struct KgRowRaw {
    typedef typename T::storage S;
    static constexpr int kWords = kItems * (int)sizeof(S) / 4;
    static_assert(sizeof(S) == 2 || sizeof(S) == 4, "2- or 4-byte elements");
    static_assert(kWords % 4 == 0, "whole 16-byte vectors");

    static __device__ __forceinline__ void load(const S* __restrict__ ptr, int valid, bool vec_ok,
                                                unsigned int (&words)[kWords]) {
        if (vec_ok && valid >= kItems) {
            const uint4* vp = reinterpret_cast<const uint4*>(ptr);
#pragma unroll
            for (int v = 0; v < kWords / 4; ++v) {
                const uint4 q = vp[v];
                words[4 * v] = q.x; words[4 * v + 1] = q.y; words[4 * v + 2] = q.z; words[4 * v + 3] = q.w;
            }
        } else if (valid >= kItems) {
            // Rows that are not 16-byte aligned (L % 8 != 0 in 2-byte types): element loads, all
            // issued before any is used (behind per-element branches each waited on its own;
            // round 214: L = 4093 1.15 -> 0.95 ms).
#pragma unroll
            for (int w = 0; w < kWords; ++w) words[w] = 0u;
#pragma unroll
            for (int i = 0; i < kItems; ++i) kg_or_element_bits(ptr + i, i, words);
        } else {
#pragma unroll
            for (int w = 0; w < kWords; ++w) words[w] = 0u;
#pragma unroll
            for (int i = 0; i < kItems; ++i)
                if (i < valid) kg_or_element_bits(ptr + i, i, words);
        }
    }
};

// ---------------------------------------------------------------------------------------------
// Rows that are not 16-byte aligned (L % 8 != 0 in 2-byte types, L % 4 != 0 in fp32, or a view's
// offset), in the forward's channel and warp layouts. Element loads and stores there touch one cache line
// per lane and element: the L1 becomes the bound (round 214: L = 4093 ran 2.2x the aligned time).
// Instead the row is read and written as the aligned 16-byte vectors that cover it, the bytes
// moved into place in registers (kg_byte_window); a vector two sub-chunks (or two lanes) share is
// carried or handed over by a shuffle, so a sub-chunk costs the aligned path's vector count.
// ---------------------------------------------------------------------------------------------
__device__ __forceinline__ unsigned int kg_funnel_shift_right(unsigned int lo, unsigned int hi, unsigned int shift) {
#if defined(__CUDA_ARCH__)
    return __funnelshift_r(lo, hi, shift);
#else
    return (unsigned int)(((((unsigned long long)hi) << 32) | lo) >> (shift & 31u));
#endif
}

// out = bytes [o, o + 4 kOut) of the little-endian byte string w, o known only at run time
// (0 <= o < 16, or o = 16 with kUpTo16). Two selects pick the word offset o / 4 and a funnel
// shift the bytes within a word: ~3 instructions a word, where an index into w would put it in
// local memory.
template <int kOut, bool kUpTo16>
__device__ __forceinline__ void kg_byte_window(const unsigned int (&w)[kOut + 4], int o, unsigned int (&out)[kOut]) {
    const int k = o >> 2;
    const unsigned int shift = 8u * (unsigned int)(o & 3);
    unsigned int s1[kOut + 3], s2[kOut + 1];
#pragma unroll
    for (int j = 0; j < kOut + 3; ++j) s1[j] = (k & 1) ? w[j + 1] : w[j];
#pragma unroll
    for (int j = 0; j < kOut + 1; ++j) s2[j] = (k & 2) ? s1[j + 2] : s1[j];
#pragma unroll
    for (int m = 0; m < kOut; ++m) {
        const unsigned int v = kg_funnel_shift_right(s2[m], s2[m + 1], shift);
        out[m] = (kUpTo16 && (k & 4)) ? w[4 + m] : v;
    }
}

// Element i of packed words as its storage type, and floats packed into words.
template <typename T>
__device__ __forceinline__ typename T::storage kg_word_storage(const unsigned int* words, int i) {
    typedef typename T::storage S;
    if constexpr (sizeof(S) == 2) return (S)(unsigned short)(words[i / 2] >> (16 * (i % 2)));
    else return kg_bits_to_float(words[i]);
}

template <typename T, int kItems>
__device__ __forceinline__ void kg_pack_words(const float (&in)[kItems], unsigned int (&words)[kItems * sizeof(typename T::storage) / 4]) {
    typedef typename T::storage S;
    if constexpr (sizeof(S) == 2) {
#pragma unroll
        for (int j = 0; j < kItems / 2; ++j)
            words[j] = (unsigned int)(unsigned short)T::from_float(in[2 * j])
                       | ((unsigned int)(unsigned short)T::from_float(in[2 * j + 1]) << 16);
    } else {
#pragma unroll
        for (int j = 0; j < kItems; ++j) words[j] = kg_float_to_bits(in[j]);
    }
}

__device__ __forceinline__ uint4 kg_load_vector_nc(const uint4* p) {
#if defined(__CUDA_ARCH__)
    return __ldg(p);   // read-only path, as the aligned loads through __restrict__ pointers get
#else
    return *p;
#endif
}

// Aligned vector `at` (counted from `vectors`, the one holding the row's first byte) as 4 words:
// one 16-byte load while it lies inside the row's allocation (at < whole), else the row's elements
// in it, zeros past the row's end (a whole load there could reach past the last row's allocation).
template <typename T>
__device__ __forceinline__ void kg_load_vector_words(const uint4* vectors, int at, int whole, const typename T::storage* row,
                                                     int offset, int L, unsigned int* w) {
    typedef typename T::storage S;
    if (at < whole) {
        const uint4 q = kg_load_vector_nc(vectors + at);
        w[0] = q.x; w[1] = q.y; w[2] = q.z; w[3] = q.w;
    } else {
        constexpr int kPerVec = 16 / (int)sizeof(S);
        const int first = (16 * at - offset) / (int)sizeof(S);
#pragma unroll
        for (int j = 0; j < 4; ++j) w[j] = 0u;
#pragma unroll
        for (int i = 0; i < kPerVec; ++i)
            if (first + i < L) kg_or_element_bits(row + first + i, i, w);
    }
}

// Loads of an unaligned row's kItems-element sub-chunks, one ahead (fetch during a sub-chunk,
// take at the next) as raw words, converted only when taken: the aligned vectors covering the
// sub-chunk, [carried vector, kVecs new ones], shifted by the row's offset when taken. The vector
// holding the row's end is read by element (whole, it would reach past the last row's
// allocation), and vectors past it are never used. The last, partial sub-chunk: element loads,
// zeros past the row (garbage there would make 0 * x a NaN).
template <typename T, int kItems>
struct KgRowShiftedLoad {
    typedef typename T::storage S;
    typedef KgRowRaw<T, kItems> Raw;
    static constexpr int kWords = Raw::kWords;
    static constexpr int kVecs = kWords / 4;
    const S* row;
    const uint4* vectors;       // the aligned vector holding the row's first byte
    int offset, L;              // that byte within it
    int whole;                  // vectors [0, whole) lie inside the row's allocation
    bool shifted;               // w is [carried vector, kVecs vectors] (else the words themselves)
    unsigned int w[kWords + 4];

    __device__ __forceinline__ void begin(const S* row_, int L_) {
        row = row_;
        L = L_;
        const unsigned long long address = (unsigned long long)row_;
        vectors = reinterpret_cast<const uint4*>(address & ~15ull);
        offset = (int)(address & 15ull);
        whole = (offset + L * (int)sizeof(S)) / 16;   // vector 0's head is the same allocation's
        if (L >= kItems) {
            const uint4 q = kg_load_vector_nc(vectors);
            w[kWords] = q.x; w[kWords + 1] = q.y; w[kWords + 2] = q.z; w[kWords + 3] = q.w;
        }
        fetch(0, L);
    }

    // Start loading the sub-chunk at t (a multiple of kItems), `valid` = L - t elements in the row.
    __device__ __forceinline__ void fetch(int t, int valid) {
        if (valid >= kItems) {
            const int v0 = t * (int)sizeof(S) / 16;  // the carried vector: the previous fetch's last
#pragma unroll
            for (int j = 0; j < 4; ++j) w[j] = w[kWords + j];
#pragma unroll
            for (int v = 0; v < kVecs; ++v) kg_load_vector_words<T>(vectors, v0 + 1 + v, whole, row, offset, L, &w[4 + 4 * v]);
            shifted = true;
        } else {
            unsigned int words[kWords];
            Raw::load(row + t, valid, false, words);
#pragma unroll
            for (int j = 0; j < kWords; ++j) w[j] = words[j];
            shifted = false;
        }
    }

    __device__ __forceinline__ void take(float (&out)[kItems]) const {
        unsigned int words[kWords];
        if (shifted) {
            kg_byte_window<kWords, false>(w, offset, words);
        } else {
#pragma unroll
            for (int j = 0; j < kWords; ++j) words[j] = w[j];
        }
#pragma unroll
        for (int i = 0; i < kItems; ++i) out[i] = kg_word_element<T>(words, i);
    }
};

// kItems elements of a row from step t (t * element size a multiple of 16), zeros at and past L,
// for rows that are not 16-byte aligned but whose offset the whole warp shares (the warp layout).
// `fetch` issues the loads: a run as the kItems / (16 / size) + 1 aligned vectors covering it
// (a run of under 16 bytes by element). `take` waits for them and shifts a
// whole run into place. Split so that two rows' loads (B's and C's) are in flight together:
// shifting right after the loads made C's wait for B's data (batch 2, dim 1536, L 2047:
// 0.342 -> 0.282 ms). The shift is kg_byte_window's selects, although the offset is the warp's:
// a switch on it, one funnel shift a word, ran 4% slower (its branches; round 227).
template <typename T, int kItems>
struct KgRunUnaligned {
    typedef typename T::storage S;
    static constexpr bool kVectors = (kItems * (int)sizeof(S)) % 16 == 0;
    static constexpr int kWords = kVectors ? kItems * (int)sizeof(S) / 4 : 4;
    unsigned int w[kWords + 4];   // kVectors: the covering vectors' words
    float direct[kItems];         // !kVectors: the run itself
    int offset;
    bool covered;                 // the run has elements in the row (else it reads as zeros)

    __device__ __forceinline__ void fetch(const S* row, int L, int t) {
        if constexpr (kVectors) {
            const unsigned long long address = (unsigned long long)row;
            offset = (int)(address & 15ull);
            // A partial run reads the covering vectors too: those past the row's allocation go by
            // element, zeros past L, so the ragged chunk's lanes do not diverge into element loads.
            covered = L - t > 0;
            if (covered) {
                const uint4* vectors = reinterpret_cast<const uint4*>(address & ~15ull);
                const int in_row = (offset + L * (int)sizeof(S)) / 16;   // vectors inside the allocation
                const int v0 = t * (int)sizeof(S) / 16;
#pragma unroll
                for (int v = 0; v <= kWords / 4; ++v) kg_load_vector_words<T>(vectors, v0 + v, in_row, row, offset, L, &w[4 * v]);
            }
        } else {
            KgRowIO<T, kItems>::load(row + t, L - t, false, direct);
        }
    }

    __device__ __forceinline__ void take(float (&out)[kItems]) const {
        if constexpr (kVectors) {
            unsigned int words[kWords];
            if (covered) {
                kg_byte_window<kWords, false>(w, offset, words);
            } else {   // a run past L
#pragma unroll
                for (int j = 0; j < kWords; ++j) words[j] = 0u;
            }
#pragma unroll
            for (int i = 0; i < kItems; ++i) out[i] = kg_word_element<T>(words, i);
        } else {
#pragma unroll
            for (int i = 0; i < kItems; ++i) out[i] = direct[i];
        }
    }
};

// Stores of a row that is not 16-byte aligned, in runs: per sub-chunk each of the kParts adjacent
// lanes sharing the row (a channel's split lanes, or a whole warp in the warp layout) holds kRun
// consecutive outputs, lane p the p-th run (a whole number of vectors). A lane writes the aligned vectors whose last byte is in its run: they begin with the
// previous run's last `offset` bytes, handed over by a shuffle (the last lane's from the previous
// sub-chunk, carried). Two places are written by element: the row's first vector (its head is the
// row before, another thread's) and the last full run's tail (`flush`, before the partial last
// sub-chunk's element stores or after the loop).
template <typename T, int kRun, int kParts>
struct KgRowStoreStream {
    typedef typename T::storage S;
    static constexpr int kRunWords = kRun * (int)sizeof(S) / 4;
    static constexpr int kRunVecs = kRunWords / 4;
    static constexpr int kPerVec = 16 / (int)sizeof(S);
    static constexpr bool kFits = (kRun * (int)sizeof(S)) % 16 == 0;   // whole vectors a run
    S* row;
    uint4* vectors;
    int offset;
    unsigned int carry[4];      // this lane's last run's last vector
    bool pending;               // that run's last `offset` bytes are not written yet

    __device__ __forceinline__ void begin(S* row_) {
        row = row_;
        const unsigned long long address = (unsigned long long)row_;
        vectors = reinterpret_cast<uint4*>(address & ~15ull);
        offset = (int)(address & 15ull);
#pragma unroll
        for (int j = 0; j < 4; ++j) carry[j] = 0u;
        pending = false;
    }

    // A full sub-chunk at t0: this lane (`part` of kParts) holds outputs [part kRun, (part + 1) kRun).
    // Every lane of the warp calls it (shuffles); only `store` lanes write.
    __device__ __forceinline__ void put(const float (&values)[kRun], int t0, int part, bool store) {
        unsigned int w[kRunWords + 4], own[kRunWords], out[kRunWords];
        kg_pack_words<T, kRun>(values, own);
#pragma unroll
        for (int j = 0; j < kRunWords; ++j) w[4 + j] = own[j];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            if constexpr (kParts > 1) {
                // lane p takes lane p - 1's run end; the first lane the last lane's previous one
                const unsigned int send = part == kParts - 1 ? carry[j] : own[kRunWords - 4 + j];
                const int lane = (int)threadIdx.x % 32;
                w[j] = __shfl_sync(KG_FULL_MASK, send, part == 0 ? lane + kParts - 1 : lane - 1);
            } else {
                w[j] = carry[j];
            }
            carry[j] = own[kRunWords - 4 + j];
        }
        kg_byte_window<kRunWords, true>(w, 16 - offset, out);
        if (store) {
            const int run_start = t0 + part * kRun;
            uint4* dst = vectors + run_start * (int)sizeof(S) / 16;
#pragma unroll
            for (int v = 0; v < kRunVecs; ++v) {
                if (v == 0 && run_start == 0 && offset != 0) {
                    // The row's first vector: only its bytes from `offset` on are this row's.
#pragma unroll
                    for (int i = 0; i < kPerVec; ++i)
                        if (i < kPerVec - offset / (int)sizeof(S)) row[i] = kg_word_storage<T>(own, i);
                } else {
                    uint4 q;
                    q.x = out[4 * v]; q.y = out[4 * v + 1]; q.z = out[4 * v + 2]; q.w = out[4 * v + 3];
                    dst[v] = q;
                }
            }
        }
        pending = true;
    }

    // A ragged last sub-chunk after put(..., store = whole run): the last whole run (at run_start,
    // this lane's if `last_whole`) has its pending bytes written by element from its carry; the
    // partial run after it is the caller's, by element. Nothing is pending after.
    __device__ __forceinline__ void flush_run(int run_start, bool last_whole) {
        if (last_whole && offset != 0) {
            S* at = row + run_start + kRun - kPerVec;   // the run's last vector's elements
#pragma unroll
            for (int i = 0; i < kPerVec; ++i)
                if (i >= kPerVec - offset / (int)sizeof(S)) at[i] = kg_word_storage<T>(carry, i);
        }
        pending = false;
    }

    // The last full sub-chunk (at t_full)'s pending bytes, by element from the last lane's carry.
    __device__ __forceinline__ void flush(int t_full, int part, bool store) {
        if (pending && store && part == kParts - 1 && offset != 0) {
            S* at = row + t_full + kParts * kRun - kPerVec;   // the run's last vector's elements
#pragma unroll
            for (int i = 0; i < kPerVec; ++i)
                if (i >= kPerVec - offset / (int)sizeof(S)) at[i] = kg_word_storage<T>(carry, i);
        }
        pending = false;
    }
};

// ---------------------------------------------------------------------------------------------
// Forward scan. For each chunk and state: the lane maps, the warp scan with the carry from the
// previous chunk, then the replay accumulating C * h into y. kWarps channels of one batch row
// share a block so their B/C loads (identical within a group) hit L1. No __syncthreads: warps
// are independent. Optionally writes the state entering every chunk (`chunk_states`, the warp
// backward's input) and the state entering every `ckpt_steps`-th step (`checkpoints`, the channel
// and Triton backwards' input; a multiple of kItems, so each is some lane's start state).
//
// Template parameters: InT the type of u/delta/z/out, WT the type of B/C, kN the number of states,
// kWarps channels per block (threads = 32 * kWarps), kItems timesteps per lane, kUnroll the
// unroll factor of the state loop (1 or 2: two states interleaved hide shuffle latency),
// kMinBlocks the blocks per SM ptxas must fit (caps registers: more warps, or no spills);
// kAligned: the launcher found every row of u, delta, z, out, B and C 16-byte aligned. Else a
// lane's whole run is read as the aligned vectors covering it, shifted by the row's offset (one
// per row, so one per warp: KgRunUnaligned), and written in aligned vectors whose head the
// previous lane hands over (KgRowStoreStream over the warp's 32 runs): element loads there made
// the L1 the bound (L = 2047 at batch 2, dim 1536: 2.6x the time at 2048).
// Runtime flags (nullable pointers, delta_softplus) cost one uniform branch per element.
// ---------------------------------------------------------------------------------------------
template <typename InT, typename WT, int kN, int kWarps, int kItems, int kUnroll, int kMinBlocks, bool kAligned>
__global__ void __launch_bounds__(kWarps * 32, kMinBlocks)
selective_scan_fwd_kernel(const typename InT::storage* __restrict__ u,
                          const typename InT::storage* __restrict__ delta,
                          const float* __restrict__ A,                  // [dim, N]
                          const typename WT::storage* __restrict__ Bm,  // [batch, G, N, L]
                          const typename WT::storage* __restrict__ Cm,  // [batch, G, N, L]
                          const float* __restrict__ D,                  // [dim] or null
                          const typename InT::storage* __restrict__ z,  // [batch, dim, L] or null
                          const float* __restrict__ delta_bias,         // [dim] or null
                          const float* __restrict__ initial_state,      // [batch, dim, N] or null
                          typename InT::storage* __restrict__ out,      // [batch, dim, L]
                          float* __restrict__ last_state,               // [batch, dim, N] or null
                          float* __restrict__ chunk_states,             // [batch, dim, chunks, N] or null
                          float* __restrict__ checkpoints,              // [batch, dim, n_ckpt, N] or null
                          int dim, int L, int groups, int delta_softplus, int ckpt_steps) {
    typedef KgRowIO<InT, kItems> InIO;
    typedef KgRowIO<WT, kItems> WIO;
    constexpr int kChunk = 32 * kItems;
    __shared__ float carry_smem[kWarps][kN];  // h entering the current chunk, per channel

    const int warp = (int)threadIdx.x / 32;
    const int lane = (int)threadIdx.x % 32;
    const int blocks_per_row = (dim + kWarps - 1) / kWarps;
    const int b = (int)blockIdx.x / blocks_per_row;
    const int d = ((int)blockIdx.x % blocks_per_row) * kWarps + warp;
    if (d >= dim) return;  // whole warp leaves; nothing below synchronises across warps
    const int g = d / (dim / groups);

    const long long row = (long long)b * dim + d;
    const KgForwardRow<InT, kItems> io(u, delta, z, out, D, delta_bias, row, d, L);
    const long long bc_offset = ((long long)b * groups + g) * kN * (long long)L;
    const typename WT::storage* B_row0 = Bm + bc_offset;
    const typename WT::storage* C_row0 = Cm + bc_offset;
    const float* A_row = A + (long long)d * kN;
    const int n_chunks = (L + kChunk - 1) / kChunk;
    float* states_row = chunk_states ? chunk_states + row * n_chunks * kN : nullptr;
    const int n_ckpt = (L + ckpt_steps - 1) / (ckpt_steps > 0 ? ckpt_steps : 1);
    float* ckpt_row = checkpoints ? checkpoints + row * n_ckpt * kN : nullptr;
    const bool bc_vec = WIO::aligned(Bm, L) && WIO::aligned(Cm, L);

    float* carry = carry_smem[warp];
    for (int n = lane; n < kN; n += 32) carry[n] = initial_state ? initial_state[row * kN + n] : 0.f;
    __syncwarp();
    typedef KgRowStoreStream<InT, kItems, 32> OutRuns;
    constexpr bool kRuns = !kAligned && OutRuns::kFits;
    OutRuns out_runs;
    if constexpr (kRuns) out_runs.begin(io.out);

    for (int chunk = 0; chunk < n_chunks; ++chunk) {
        const int t_lane = chunk * kChunk + lane * kItems;
        const int valid = L - t_lane;  // items of this lane inside [0, L): may be <= 0 or > kItems
        auto load_one = [&](const typename InT::storage* row_ptr, bool vec_ok, float (&dst)[kItems]) {
            if constexpr (kAligned) {
                InIO::load(row_ptr + t_lane, valid, vec_ok, dst);
            } else {
                KgRunUnaligned<InT, kItems> run;
                run.fetch(row_ptr, L, t_lane);
                run.take(dst);
            }
        };
        // two rows' kItems elements at t_lane (unaligned rows: both rows' loads issued first)
        auto load_pair = [&](const typename InT::storage* row0, bool vec0, float (&dst0)[kItems],
                             const typename InT::storage* row1, bool vec1, float (&dst1)[kItems]) {
            if constexpr (kAligned) {
                InIO::load(row0 + t_lane, valid, vec0, dst0);
                InIO::load(row1 + t_lane, valid, vec1, dst1);
            } else {
                KgRunUnaligned<InT, kItems> run0, run1;
                run0.fetch(row0, L, t_lane);
                run1.fetch(row1, L, t_lane);
                run0.take(dst0);
                run1.take(dst1);
            }
        };

        float dt[kItems], dtu[kItems], y[kItems];
        load_pair(io.delta, io.delta_vec, dt, io.u, io.u_vec, dtu);
        const float dt_sum = kg_prepare_dt(dt, dtu, io.bias, delta_softplus, valid);
#pragma unroll
        for (int i = 0; i < kItems; ++i) y[i] = 0.f;

#pragma unroll kUnroll
        for (int n = 0; n < kN; ++n) {
            float bn[kItems], cn[kItems], decay[kItems], input[kItems];
            // B and C are issued together, so C's latency hides behind the lane scan below
            // (loaded after it, the replay waited on it once per state and chunk).
            if constexpr (kAligned) {
                WIO::load(B_row0 + (long long)n * L + t_lane, valid, bc_vec, bn);
                WIO::load(C_row0 + (long long)n * L + t_lane, valid, bc_vec, cn);
            } else {
                KgRunUnaligned<WT, kItems> b_run, c_run;
                b_run.fetch(B_row0 + (long long)n * L, L, t_lane);
                c_run.fetch(C_row0 + (long long)n * L, L, t_lane);
                b_run.take(bn);
                c_run.take(cn);
            }
            const float h_chunk = carry[n];
            if (states_row && lane == 0) states_row[chunk * kN + n] = h_chunk;
            float h_chunk_end, lane_decay;
            float h = kg_state_into_lane(dt, dtu, bn, A_row[n] * KG_LOG2E, dt_sum, h_chunk, lane, decay, input,
                                         h_chunk_end, lane_decay);
            // h enters the lane's first step: a checkpoint where that step is a multiple of ckpt_steps
            if (ckpt_row && valid > 0 && t_lane % ckpt_steps == 0) ckpt_row[(t_lane / ckpt_steps) * kN + n] = h;
#pragma unroll
            for (int i = 0; i < kItems; ++i) {
                h = fmaf(decay[i], h, input[i]);
                y[i] = fmaf(cn[i], h, y[i]);
            }
            // Every lane read carry[n] before the shuffles inside kg_state_into_lane.
            if (lane == 0) carry[n] = h_chunk_end;
        }
        __syncwarp();  // carry writes visible to all lanes before the next chunk reads them

        if (D) {
            float uu[kItems];
            load_one(io.u, io.u_vec, uu);
#pragma unroll
            for (int i = 0; i < kItems; ++i) y[i] = fmaf(io.D, uu[i], y[i]);
        }
        if (io.z) {
            float zz[kItems];
            load_one(io.z, io.z_vec, zz);
#pragma unroll
            for (int i = 0; i < kItems; ++i) y[i] *= kg_silu(zz[i]);
        }
        if constexpr (kRuns) {
            const int whole_runs = (L - chunk * kChunk) / kItems;   // lanes holding kItems steps of the row
            if (whole_runs >= 32) {
                out_runs.put(y, chunk * kChunk, lane, true);
            } else if (whole_runs > 0) {
                // The ragged last chunk: the whole runs as vectors (their lanes only), then the last
                // one's tail and the partial run after it by element.
                out_runs.put(y, chunk * kChunk, lane, lane < whole_runs);
                out_runs.flush_run(t_lane, lane == whole_runs - 1);
                if (lane == whole_runs) InIO::store(io.out + t_lane, valid, false, y);
            } else {
                out_runs.flush(chunk * kChunk - kChunk, lane, true);
                InIO::store(io.out + t_lane, valid, false, y);
            }
        } else {
            InIO::store(io.out + t_lane, valid, io.out_vec, y);
        }
    }
    if constexpr (kRuns) out_runs.flush((n_chunks - 1) * kChunk, lane, true);

    if (last_state)
        for (int n = lane; n < kN; n += 32) last_state[row * kN + n] = carry[n];
}

// ---------------------------------------------------------------------------------------------
// Forward scan, channel layout. The warp layout above spends its time on lane scans and on B/C
// reloaded per channel (every channel of a group reads the same B_t, C_t: at batch 8, dim 2048,
// L 4096, N 16 that is 4.3 GB through L2). Here a thread owns one channel (or 1/kSplit of its
// states) and walks L step by step with its states in registers: no scan, no shuffles but the
// kSplit-lane sum of y, and the block's channels share each chunk of B/C staged once in shared
// memory (read back as broadcasts). B/C come packed to fp32 by pack_bc (templates/selective_scan.py,
// [batch, G, l_pad, 2, NP], the backwards' input too), so a chunk is one contiguous run copied by
// cp.async: no registers held for it, no conversions, no bounds clamps. Per (step, state): one
// ex2, two multiplies, two FMAs, so the exp unit is the bound; the parallelism is
// batch * dim * kSplit threads, each with kS independent chains a step (enough ILP for one or two
// warps per scheduler).
//
// Template parameters: kN states; kSplit threads per channel (a power of two <= 32, dividing kN);
// kThreads per block (channels per block = kThreads / kSplit, all of one group); kChunk steps of
// B/C staged at a time (a multiple of kItems, double buffered); kItems steps a sub-chunk, the
// unrolled body (8, 16 or 32: at the H100 target, ~2 warps per scheduler, 16 steps give the
// scheduler twice the independent exps of 8 and ran 9% faster); kPoly of each thread's kS states
// take their exp on the FMA pipe (kg_exp2_poly) to offload the exp unit; kMinBlocks as above;
// kSoftplus applies softplus to delta + delta_bias.
// Writes the state entering every `ckpt_steps`-th step to `checkpoints` ([batch, dim, n_ckpt, N],
// the Triton backward's format) when given. Grid: one dimension, blocks ordered (batch, group,
// channel block).
// ---------------------------------------------------------------------------------------------
__device__ __forceinline__ float kg_exp2_poly(float x) {
    // 2^x on the FMA pipe for x <= 0: x = j + f (j nearest integer by the 1.5 * 2^23 rounding
    // trick), 2^f by a degree-5 polynomial on [-0.5, 0.5] (rel. error ~2e-7, like ex2.approx),
    // and j added to the exponent field. Below -125 the result flushes to 0 like ex2.approx.ftz.
    x = fmaxf(x, -125.f);
    const float shifted = x + 12582912.f;
    const float j = shifted - 12582912.f;
    const float f = x - j;
    float p = fmaf(0.0013218672247603536f, f, 0.009671698324382305f);
    p = fmaf(p, f, 0.05550893023610115f);
    p = fmaf(p, f, 0.24022237956523895f);
    p = fmaf(p, f, 0.6931468844413757f);
    p = fmaf(p, f, 1.f);
    const int j_bits = ((int)kg_float_to_bits(shifted) - 0x4B400000) << 23;
    return kg_bits_to_float(kg_float_to_bits(p) + (unsigned int)j_bits);
}

__host__ __device__ constexpr int kg_pow2_ceil(int x) { return x <= 1 ? 1 : 2 * kg_pow2_ceil((x + 1) / 2); }
__host__ __device__ constexpr int kg_log2_floor(int x) { return x <= 1 ? 0 : 1 + kg_log2_floor(x / 2); }

template <bool kValue>
struct KgBool { static constexpr bool value = kValue; };

// Transpose-reduce: sums kValues floats per lane over 2^kStages lanes of a warp without replicating
// the sums. Stage j pairs the lanes kOffset0 << j apart (kOffset0 >> j with kDown); each keeps one
// half of its values, sends the other and adds what its partner sent: one shuffle per pair, where
// an all-reduce would take kStages per value. Afterwards a lane holds kValues >> kStages sums, those
// of the values (block * kLeft + r) for r < kLeft, where block's bit (kStages - 1 - j) is the lane's
// stage-j bit: with kDown, block = (lane / (kOffset0 >> (kStages - 1))) % 2^kStages.
template <int kValues, int kOffset0, int kStages, bool kDown>
struct KgTransposeSum {
    static_assert((kValues & (kValues - 1)) == 0 && (kValues >> kStages) >= 1, "kValues: a power of two >= 2^kStages");
    static constexpr int kLeft = kValues >> kStages;

    template <int kStage = 0>
    static __device__ __forceinline__ void reduce(float (&v)[kValues], int lane) {
        if constexpr (kStage < kStages) {
            constexpr int kHalf = (kValues >> kStage) / 2;
            constexpr int kOffset = kDown ? kOffset0 >> kStage : kOffset0 << kStage;
            const bool upper = (lane & kOffset) != 0;
#pragma unroll
            for (int k = 0; k < kHalf; ++k) {
                const float send = upper ? v[k] : v[k + kHalf];
                const float keep = upper ? v[k + kHalf] : v[k];
                v[k] = keep + __shfl_xor_sync(KG_FULL_MASK, send, kOffset);
            }
            reduce<kStage + 1>(v, lane);
        }
    }

    // The stage bits a lane needs to hold value block `block` (added to the lane's other bits).
    static __device__ __forceinline__ int lane_bits(int block) {
        int bits = 0;
#pragma unroll
        for (int j = 0; j < kStages; ++j)
            if ((block >> (kStages - 1 - j)) & 1) bits |= kDown ? kOffset0 >> j : kOffset0 << j;
        return bits;
    }
};

// out[i] = f(in[i]) for a channel's kItems steps, computed once per channel: each of the kSplit
// threads of the channel (adjacent lanes, `part` = lane % kSplit) takes kItems / kSplit of the
// steps and shuffles hand the results round, so an f with exps (softplus: an ex2 and a lg2) costs
// the exp unit once per step, not kSplit times. Every lane of the warp must call it (the shuffles
// are full-warp).
template <int kSplit, int kItems, typename F>
__device__ __forceinline__ void kg_per_channel(const float (&in)[kItems], float (&out)[kItems], int part, F f) {
    if constexpr (kSplit > 1 && kItems % kSplit == 0) {
        constexpr int kOwn = kItems / kSplit;
        float own[kOwn];
#pragma unroll
        for (int j = 0; j < kOwn; ++j) {
            float x = in[j * kSplit];
#pragma unroll
            for (int p = 1; p < kSplit; ++p) x = part == p ? in[j * kSplit + p] : x;
            own[j] = f(x);
        }
        const int first_lane = ((int)threadIdx.x % 32) & ~(kSplit - 1);
#pragma unroll
        for (int i = 0; i < kItems; ++i)
            out[i] = __shfl_sync(KG_FULL_MASK, own[i / kSplit], first_lane + i % kSplit);
    } else {
#pragma unroll
        for (int i = 0; i < kItems; ++i) out[i] = f(in[i]);
    }
}

// Asynchronous 16-byte copies global -> shared (cp.async, sm_80+) for the staging of B/C: no
// registers held and no conversion on the way. `inside` false zero-fills the 16 bytes (the source
// address must still be valid). Elsewhere (older GPUs, the CPU emulation) a plain copy.
__device__ __forceinline__ void kg_copy_async16(float* smem, const float* gmem, bool inside) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    unsigned int dst;
    asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(dst) : "l"(smem));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(gmem), "r"(inside ? 16 : 0)
                 : "memory");
#else
    for (int i = 0; i < 4; ++i) smem[i] = inside ? gmem[i] : 0.f;
#endif
}

__device__ __forceinline__ void kg_copy_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;" ::: "memory");
#endif
}

__device__ __forceinline__ void kg_copy_async_wait_all() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group 0;" ::: "memory");
#endif
}

// The packed B/C row stride of `pack_bc` (templates/selective_scan.py): N rounded up to a power
// of two, at least 2.
__host__ __device__ constexpr int kg_packed_states(int n) { return n <= 2 ? 2 : kg_pow2_ceil(n); }

template <typename InT, int kN, int kSplit, int kThreads, int kChunk, int kItems, int kPoly, int kMinBlocks,
          bool kSoftplus, bool kAligned>
__global__ void __launch_bounds__(kThreads, kMinBlocks)
selective_scan_fwd_channel_kernel(const typename InT::storage* __restrict__ u,
                                  const typename InT::storage* __restrict__ delta,
                                  const float* __restrict__ A,                  // [dim, N]
                                  const float* __restrict__ bc,                 // [batch or 1, G, l_pad, 2, NP]
                                  const float* __restrict__ D,                  // [dim] or null
                                  const typename InT::storage* __restrict__ z,  // [batch, dim, L] or null
                                  const float* __restrict__ delta_bias,         // [dim] or null
                                  const float* __restrict__ initial_state,      // [batch, dim, N] or null
                                  typename InT::storage* __restrict__ out,      // [batch, dim, L]
                                  float* __restrict__ last_state,               // [batch, dim, N] or null
                                  float* __restrict__ checkpoints,              // [batch, dim, n_ckpt, N] or null
                                  int dim, int L, int groups, int l_pad, int bc_broadcast,
                                  int ckpt_steps) {
    static_assert(kN % kSplit == 0 && (kSplit & (kSplit - 1)) == 0 && kSplit <= 32, "kSplit: power of 2 dividing N");
    static_assert(kThreads % 32 == 0 && kThreads % kSplit == 0, "kThreads: whole warps and channels");
    static_assert(kItems % 8 == 0 && kChunk % kItems == 0, "kChunk: a multiple of the sub-chunk, kItems of 8");
    constexpr int kS = kN / kSplit;              // states per thread
    constexpr int kChannels = kThreads / kSplit;
    constexpr int kNP = kg_packed_states(kN);
    constexpr int kStepFloats = 2 * kNP;         // one packed step: B then C
    constexpr int kVectors = kChunk * kStepFloats / 4;
    constexpr int kVectorsPerThread = (kVectors + kThreads - 1) / kThreads;
    typedef KgRowIO<InT, kItems> InIO;
    // [buffer][step][B, C][state], the packed rows as they are in memory.
    __shared__ __align__(16) float bc_smem[2][kChunk * kStepFloats];

    const int tid = (int)threadIdx.x;
    const int part = tid % kSplit;
    const int dpg = dim / groups;
    const int blocks_per_group = (dpg + kChannels - 1) / kChannels;
    const int b = (int)blockIdx.x / (groups * blocks_per_group);
    const int g = ((int)blockIdx.x / blocks_per_group) % groups;
    const int d_local = ((int)blockIdx.x % blocks_per_group) * kChannels + tid / kSplit;
    const bool active = d_local < dpg;
    // Idle threads (past the group's channels) shadow its last channel: loads stay in bounds,
    // they join the B/C staging and barriers, and never store.
    const int d = g * dpg + (active ? d_local : dpg - 1);
    const long long row = (long long)b * dim + d;
    const KgForwardRow<InT, kItems> io(u, delta, z, out, D, delta_bias, row, d, L);
    const long long bc_floats = (long long)l_pad * kStepFloats;     // one (batch, group)'s rows
    const float* __restrict__ bc_rows = bc + ((long long)(bc_broadcast ? 0 : b) * groups + g) * bc_floats;
    const int s0 = part * kS;
    const int n_ckpt = (L + ckpt_steps - 1) / (ckpt_steps > 0 ? ckpt_steps : 1);

    float A2[kS], h[kS];
#pragma unroll
    for (int s = 0; s < kS; ++s) {
        A2[s] = A[(long long)d * kN + s0 + s] * KG_LOG2E;
        h[s] = initial_state ? initial_state[row * kN + s0 + s] : 0.f;
    }

    // One chunk of packed B/C into a buffer, straight from global memory (padding steps of the
    // packed rows are zeros; a chunk running past l_pad is zero-filled), as one commit group.
    auto stage = [&](int buffer, int chunk_start) {
        const long long first = (long long)chunk_start * kStepFloats;
#pragma unroll
        for (int k = 0; k < kVectorsPerThread; ++k) {
            const int v = k * kThreads + tid;
            if (kVectors % kThreads == 0 || v < kVectors) {
                const long long at = first + 4LL * v;
                const bool inside = at < bc_floats;
                kg_copy_async16(&bc_smem[buffer][4 * v], bc_rows + (inside ? at : 0), inside);
            }
        }
        kg_copy_async_commit();
    };

    if (L > 0) {
        stage(0, 0);
        kg_copy_async_wait_all();
    }
    __syncthreads();
    // The next 8 steps' delta/u/z are loaded one sub-chunk ahead: with one warp per scheduler
    // nothing else would hide the DRAM latency.
    // kAligned: the launcher found every row 16-byte aligned. Else KgRowShiftedLoad and
    // KgRowStoreStream read and write the aligned vectors that cover the rows, shifting in registers.
    typedef KgRowRaw<InT, kItems> Raw;
    unsigned int dt_next[Raw::kWords], u_next[Raw::kWords], z_next[Raw::kWords];
    KgRowShiftedLoad<InT, kItems> delta_in, u_in, z_in;
    if (L > 0) {
        if constexpr (kAligned) {
            Raw::load(io.delta, L, io.delta_vec, dt_next);
            Raw::load(io.u, L, io.u_vec, u_next);
            if (io.z) Raw::load(io.z, L, io.z_vec, z_next);
        } else {
            delta_in.begin(io.delta, L);
            u_in.begin(io.u, L);
            if (io.z) z_in.begin(io.z, L);
        }
    }
    constexpr bool kRunsSplit = kSplit > 1 && kItems % kSplit == 0;   // each split lane stores its own steps
    typedef KgRowStoreStream<InT, kRunsSplit ? kItems / kSplit : kItems, kRunsSplit ? kSplit : 1> OutStream;
    constexpr bool kStream = !kAligned && OutStream::kFits;
    OutStream out_stream;
    if constexpr (kStream) out_stream.begin(io.out);
    int ckpt_countdown = 0;                      // steps to the next checkpoint (a multiple of 8)
    // The thread's kS states of each checkpoint go out as 16-byte vectors where they can: as kS
    // scalar stores they were 8 partial-sector writes a thread, and the checkpoints cost 0.070 ms
    // of the target's 0.503 (round 222).
    float* ckpt_at = checkpoints ? checkpoints + row * n_ckpt * kN + s0 : nullptr;   // the next checkpoint
    const bool ckpt_vec = kS % 4 == 0 && ((unsigned long long)checkpoints % 16) == 0;
#pragma unroll 1
    for (int t0 = 0; t0 < L; t0 += kItems) {
        const int sub = t0 % kChunk;
        const int buffer = (t0 / kChunk) & 1;
        const bool next_chunk = t0 - sub + kChunk < L;
        if (sub == 0 && next_chunk) stage(buffer ^ 1, t0 + kChunk);   // in flight during this chunk
        const int valid = L - t0;
        float dt[kItems], uu[kItems], zz[kItems], y[kItems];
        if constexpr (kAligned) {
#pragma unroll
            for (int i = 0; i < kItems; ++i) {
                dt[i] = kg_word_element<InT>(dt_next, i);
                uu[i] = kg_word_element<InT>(u_next, i);
                zz[i] = io.z ? kg_word_element<InT>(z_next, i) : 0.f;
            }
            if (t0 + kItems < L) {
                Raw::load(io.delta + t0 + kItems, valid - kItems, io.delta_vec, dt_next);
                Raw::load(io.u + t0 + kItems, valid - kItems, io.u_vec, u_next);
                if (io.z) Raw::load(io.z + t0 + kItems, valid - kItems, io.z_vec, z_next);
            }
        } else {
            delta_in.take(dt);
            u_in.take(uu);
            if (io.z) {
                z_in.take(zz);
            } else {
#pragma unroll
                for (int i = 0; i < kItems; ++i) zz[i] = 0.f;
            }
            if (t0 + kItems < L) {
                delta_in.fetch(t0 + kItems, valid - kItems);
                u_in.fetch(t0 + kItems, valid - kItems);
                if (io.z) z_in.fetch(t0 + kItems, valid - kItems);
            }
        }
        if (checkpoints) {
            if (ckpt_countdown == 0) {
                if (active) {
                    if (ckpt_vec) {
#pragma unroll
                        for (int v = 0; v < kS / 4; ++v) {
                            float4 q;
                            q.x = h[4 * v]; q.y = h[4 * v + 1]; q.z = h[4 * v + 2]; q.w = h[4 * v + 3];
                            reinterpret_cast<float4*>(ckpt_at)[v] = q;
                        }
                    } else {
#pragma unroll
                        for (int s = 0; s < kS; ++s) ckpt_at[s] = h[s];
                    }
                }
                ckpt_at += kN;
                ckpt_countdown = ckpt_steps;
            }
            ckpt_countdown -= kItems;
        }
        // All the sub-chunk's dt first (their softplus chains overlap), then the states. No branch
        // around either (softplus is a template flag, the ragged mask a select on every step): a
        // branch here closed the basic block, so nothing of the states could be scheduled into the
        // softplus chain's latency (round 213: 0.454 -> 0.440 ms).
        float step[kItems], step_u[kItems];
        if constexpr (kSoftplus) {
            kg_per_channel<kSplit>(dt, step, part, [&](float x) { return kg_softplus(x + io.bias); });
        } else {
#pragma unroll
            for (int i = 0; i < kItems; ++i) step[i] = dt[i] + io.bias;
        }
#pragma unroll
        for (int i = 0; i < kItems; ++i) step[i] = i < valid ? step[i] : 0.f;   // past L: decay 1, input 0
#pragma unroll
        for (int i = 0; i < kItems; ++i) step_u[i] = step[i] * uu[i];
#pragma unroll
        for (int i = 0; i < kItems; ++i) {
            const float* bcs = &bc_smem[buffer][(sub + i) * kStepFloats + s0];
            // B_t, C_t of the thread's states, read as 16-byte vectors when they are whole ones
            // (one LDS.128 per 4 states, not 4 scalar loads).
            float bs[kS], cs[kS];
            if constexpr (kS % 4 == 0) {
#pragma unroll
                for (int v = 0; v < kS / 4; ++v) {
                    const float4 bv = reinterpret_cast<const float4*>(bcs)[v];
                    const float4 cv = reinterpret_cast<const float4*>(bcs + kNP)[v];
                    bs[4 * v] = bv.x; bs[4 * v + 1] = bv.y; bs[4 * v + 2] = bv.z; bs[4 * v + 3] = bv.w;
                    cs[4 * v] = cv.x; cs[4 * v + 1] = cv.y; cs[4 * v + 2] = cv.z; cs[4 * v + 3] = cv.w;
                }
            } else {
#pragma unroll
                for (int s = 0; s < kS; ++s) { bs[s] = bcs[s]; cs[s] = bcs[kNP + s]; }
            }
            float y0 = 0.f, y1 = 0.f;                   // two sums: halves the FMA chain
#pragma unroll
            for (int s = 0; s < kS; ++s) {
                const float arg = step[i] * A2[s];
                const float decay = s < kPoly ? kg_exp2_poly(arg) : kg_exp2(arg);
                h[s] = fmaf(decay, h[s], step_u[i] * bs[s]);
                if (s % 2 == 0) y0 = fmaf(cs[s], h[s], y0);
                else y1 = fmaf(cs[s], h[s], y1);
            }
            y[i] = y0 + y1;                              // this thread's states' share of y_t
        }
        if constexpr (kRunsSplit) {
            // The channel's shares meet in a transpose-reduce (one shuffle per pair of values, not
            // log2(kSplit) per value): thread `part` ends with the whole sums of steps
            // [part * kMine, (part + 1) * kMine), adds D u, gates them with silu(z), stores them.
            constexpr int kMine = kItems / kSplit;
            KgTransposeSum<kItems, kSplit / 2, kg_log2_floor(kSplit), true>::reduce(y, tid % 32);
            auto own = [&](const float (&v)[kItems], int j) {   // v[part * kMine + j], no local memory
                float x = v[j];
#pragma unroll
                for (int p = 1; p < kSplit; ++p) x = part == p ? v[p * kMine + j] : x;
                return x;
            };
            float mine[kMine];
#pragma unroll
            for (int j = 0; j < kMine; ++j) mine[j] = fmaf(io.D, own(uu, j), y[j]);
            if (io.z) {
#pragma unroll
                for (int j = 0; j < kMine; ++j) mine[j] *= kg_silu(own(zz, j));
            }
            const int first = part * kMine;
            if constexpr (kStream) {
                if (valid >= kItems) {
                    out_stream.put(mine, t0, part, active);
                } else {
                    out_stream.flush(t0 - kItems, part, active);
                    if (active) KgRowIO<InT, kMine>::store(io.out + t0 + first, valid - first, false, mine);
                }
            } else if (active) {
                KgRowIO<InT, kMine>::store(io.out + t0 + first, valid - first, io.out_vec, mine);
            }
        } else {
#pragma unroll
            for (int i = 0; i < kItems; ++i) {
                float yi = y[i];
#pragma unroll
                for (int offset = kSplit / 2; offset > 0; offset /= 2)
                    yi += __shfl_xor_sync(KG_FULL_MASK, yi, offset);
                y[i] = fmaf(io.D, uu[i], yi);
            }
            if (io.z) {
#pragma unroll
                for (int i = 0; i < kItems; ++i) y[i] *= kg_silu(zz[i]);
            }
            if constexpr (kStream) {
                if (valid >= kItems) {
                    out_stream.put(y, t0, 0, active && part == 0);
                } else {
                    out_stream.flush(t0 - kItems, 0, active && part == 0);
                    if (active && part == 0) InIO::store(io.out + t0, valid, false, y);
                }
            } else if (active && part == 0) {
                InIO::store(io.out + t0, valid, io.out_vec, y);
            }
        }
        if ((sub + kItems == kChunk || t0 + kItems >= L) && next_chunk) {
            kg_copy_async_wait_all();                // this thread's copies of the next chunk
            __syncthreads();                         // everyone's, and this buffer's reads done
        }
    }
    if constexpr (kStream) out_stream.flush(L - kItems, kRunsSplit ? part : 0, active && (kRunsSplit || part == 0));
    if (last_state && active) {
#pragma unroll
        for (int s = 0; s < kS; ++s) last_state[row * kN + s0 + s] = h[s];
    }
}


// ---------------------------------------------------------------------------------------------
// Backward scan. With dy = dout * silu(z) and G_t = dL/dh_t (per state), running backwards:
//   G_t = C_t dy_t + exp(dt_{t+1} A) G_{t+1},   G_{L-1} = C_{L-1} dy_{L-1} + dlast_state
//   du_t = D dy_t + sum_n G_t dt_t B_t      dB_t += G_t dt_t u_t     dC_t += dy_t h_t
//   ddt_t = sum_n G_t (A exp(dt_t A) h_{t-1} + B_t u_t)              dA += G_t dt_t exp(dt_t A) h_{t-1}
//   ddelta = ddt * sigmoid(delta + bias) with softplus; dz = dout * y * silu'(z); dD += dy u;
//   dinitial_state = exp(dt_0 A) G_0.
// Phase 1 walks the chunks forwards and stores the state entering each (skipped when the forward
// already wrote them); phase 2 walks them backwards: per state it rebuilds h inside the chunk
// from the checkpoint (forward lane scan) and runs the adjoint as maps R -> lane_decay * R + beta
// over the lanes from 31 down to 0 (R is exp(dt A) G of the step after). dB/dC sum over the
// channels of a group: the block's warps (channels of one group, dim / G a multiple of kWarps)
// add theirs in shared memory, then one coalesced fp32 atomicAdd per (state, timestep) and block.
// dA, dD and ddelta_bias gather per warp and add atomically once per (batch, channel).
// ---------------------------------------------------------------------------------------------
template <typename InT, typename WT, int kN, int kWarps, int kItems, int kMinBlocks>
__global__ void __launch_bounds__(kWarps * 32, kMinBlocks)
selective_scan_bwd_kernel(const typename InT::storage* __restrict__ u,
                          const typename InT::storage* __restrict__ delta,
                          const float* __restrict__ A,
                          const typename WT::storage* __restrict__ Bm,
                          const typename WT::storage* __restrict__ Cm,
                          const float* __restrict__ D,
                          const typename InT::storage* __restrict__ z,
                          const float* __restrict__ delta_bias,
                          const float* __restrict__ initial_state,
                          const typename InT::storage* __restrict__ dout,   // [batch, dim, L]
                          const float* __restrict__ dlast_state,            // [batch, dim, N] or null
                          float* __restrict__ chunk_states,                 // [batch, dim, chunks, N]
                          typename InT::storage* __restrict__ du,           // [batch, dim, L]
                          typename InT::storage* __restrict__ ddelta,       // [batch, dim, L]
                          float* __restrict__ dA,                           // [dim, N], zeroed
                          float* __restrict__ dB,                           // [batch, G, N, L], zeroed
                          float* __restrict__ dC,                           // [batch, G, N, L], zeroed
                          float* __restrict__ dD,                           // [dim] zeroed, or null
                          typename InT::storage* __restrict__ dz,           // [batch, dim, L] or null
                          float* __restrict__ ddelta_bias,                  // [dim] zeroed, or null
                          float* __restrict__ dinitial_state,               // [batch, dim, N] or null
                          int dim, int L, int groups, int delta_softplus, int have_chunk_states) {
    typedef KgRowIO<InT, kItems> InIO;
    typedef KgRowIO<WT, kItems> WIO;
    constexpr int kChunk = 32 * kItems;
    constexpr int kLaneStride = kItems + 1;  // padding: conflict-free writes and reads
    __shared__ float carry_smem[kWarps][kN];   // phase 1: h; phase 2: the adjoint carry R
    __shared__ float dA_smem[kWarps][kN];
    __shared__ float reduce_smem[2][kWarps][32 * kLaneStride];

    const int warp = (int)threadIdx.x / 32;
    const int lane = (int)threadIdx.x % 32;
    const int blocks_per_row = dim / kWarps;  // the launcher ensures kWarps divides dim / G
    const int b = (int)blockIdx.x / blocks_per_row;
    const int d = ((int)blockIdx.x % blocks_per_row) * kWarps + warp;
    const int g = d / (dim / groups);

    const long long row = (long long)b * dim + d;
    const long long bc_offset = ((long long)b * groups + g) * kN * (long long)L;
    const typename WT::storage* B_row0 = Bm + bc_offset;
    const typename WT::storage* C_row0 = Cm + bc_offset;
    float* dB_row0 = dB + bc_offset;
    float* dC_row0 = dC + bc_offset;
    const float* A_row = A + (long long)d * kN;
    const int n_chunks = (L + kChunk - 1) / kChunk;
    float* states_row = chunk_states + row * n_chunks * kN;

    const bool in_vec = InIO::aligned(u, L) && InIO::aligned(delta, L) && InIO::aligned(dout, L) &&
                        InIO::aligned(du, L) && InIO::aligned(ddelta, L) &&
                        (z == nullptr || (InIO::aligned(z, L) && InIO::aligned(dz, L)));
    const bool bc_vec = WIO::aligned(Bm, L) && WIO::aligned(Cm, L);
    const float D_d = D ? D[d] : 0.f;
    const float bias_d = delta_bias ? delta_bias[d] : 0.f;
    float* carry = carry_smem[warp];

    // Phase 1: the state entering every chunk.
    if (!have_chunk_states) {
        for (int n = lane; n < kN; n += 32) carry[n] = initial_state ? initial_state[row * kN + n] : 0.f;
        __syncwarp();
        for (int chunk = 0; chunk < n_chunks; ++chunk) {
            const int t_lane = chunk * kChunk + lane * kItems;
            const int valid = L - t_lane;
            float dt[kItems], dtu[kItems];
            InIO::load(delta + row * L + t_lane, valid, in_vec, dt);
            InIO::load(u + row * L + t_lane, valid, in_vec, dtu);
            const float dt_sum = kg_prepare_dt(dt, dtu, bias_d, delta_softplus, valid);
#pragma unroll 1
            for (int n = 0; n < kN; ++n) {
                float bn[kItems], decay[kItems], input[kItems];
                WIO::load(B_row0 + (long long)n * L + t_lane, valid, bc_vec, bn);
                const float h_chunk = carry[n];
                if (lane == 0) states_row[chunk * kN + n] = h_chunk;
                float h_chunk_end, lane_decay;
                kg_state_into_lane(dt, dtu, bn, A_row[n] * KG_LOG2E, dt_sum, h_chunk, lane, decay, input,
                                   h_chunk_end, lane_decay);
                if (lane == 0) carry[n] = h_chunk_end;
            }
            __syncwarp();
        }
    }

    // Phase 2: chunks backwards.
    for (int n = lane; n < kN; n += 32) {
        carry[n] = dlast_state ? dlast_state[row * kN + n] : 0.f;
        dA_smem[warp][n] = 0.f;
    }
    __syncwarp();
    float dD_part = 0.f, dbias_part = 0.f;
    for (int chunk = n_chunks - 1; chunk >= 0; --chunk) {
        const int t0 = chunk * kChunk;
        const int t_lane = t0 + lane * kItems;
        const int valid = L - t_lane;
        float dt[kItems], uu[kItems], dtu[kItems], dy[kItems], ddt[kItems], dux[kItems], y[kItems];
        InIO::load(delta + row * L + t_lane, valid, in_vec, dt);
        InIO::load(u + row * L + t_lane, valid, in_vec, uu);
        InIO::load(dout + row * L + t_lane, valid, in_vec, dy);
#pragma unroll
        for (int i = 0; i < kItems; ++i) dtu[i] = uu[i];
        const float dt_sum = kg_prepare_dt(dt, dtu, bias_d, delta_softplus, valid);
        if (z) {
            float zz[kItems];
            InIO::load(z + row * L + t_lane, valid, in_vec, zz);
#pragma unroll
            for (int i = 0; i < kItems; ++i) dy[i] *= kg_silu(zz[i]);
        }
#pragma unroll
        for (int i = 0; i < kItems; ++i) {
            ddt[i] = 0.f;
            dux[i] = D_d * dy[i];
            y[i] = D_d * uu[i];
            dD_part = fmaf(dy[i], uu[i], dD_part);  // zero past L: dout loads as 0 there
        }

#pragma unroll 1
        for (int n = 0; n < kN; ++n) {
            const float A_n = A_row[n];
            float bn[kItems], cn[kItems], decay[kItems], h[kItems];
            WIO::load(B_row0 + (long long)n * L + t_lane, valid, bc_vec, bn);
            WIO::load(C_row0 + (long long)n * L + t_lane, valid, bc_vec, cn);
            // The forward inside the chunk, from its checkpoint: h after each item (h used as input first).
            float h_chunk_end, lane_decay;
            const float h_in = kg_state_into_lane(dt, dtu, bn, A_n * KG_LOG2E, dt_sum, states_row[chunk * kN + n],
                                                  lane, decay, h, h_chunk_end, lane_decay);
            float hv = h_in;
#pragma unroll
            for (int i = 0; i < kItems; ++i) {
                hv = fmaf(decay[i], hv, h[i]);
                h[i] = hv;
                y[i] = fmaf(cn[i], hv, y[i]);
            }
            // The adjoint: this lane's map R_in -> lane_decay * R_in + beta, scanned from lane 31 down.
            float beta = 0.f;
#pragma unroll
            for (int i = kItems - 1; i >= 0; --i) beta = decay[i] * fmaf(cn[i], dy[i], beta);
            float alpha = lane_decay;
            kg_scan_maps_down(alpha, beta, lane);
            const float r_chunk = carry[n];                      // R entering from the next chunk
            const float r_out = fmaf(alpha, r_chunk, beta);      // R leaving this lane towards lane - 1
            float r = __shfl_down_sync(KG_FULL_MASK, r_out, 1);
            if (lane == 31) r = r_chunk;
            const float r_chunk_next = __shfl_sync(KG_FULL_MASK, r_out, 0);

            float dA_part = 0.f;
            float* red_B = reduce_smem[0][warp] + lane * kLaneStride;
            float* red_C = reduce_smem[1][warp] + lane * kLaneStride;
#pragma unroll
            for (int i = kItems - 1; i >= 0; --i) {
                const float grad_h = fmaf(cn[i], dy[i], r);      // G at this step
                const float h_prev = i > 0 ? h[i - 1] : h_in;
                const float decay_h_prev = decay[i] * h_prev;
                ddt[i] = fmaf(grad_h, fmaf(A_n, decay_h_prev, bn[i] * uu[i]), ddt[i]);
                dA_part = fmaf(grad_h * dt[i], decay_h_prev, dA_part);
                dux[i] = fmaf(grad_h * dt[i], bn[i], dux[i]);
                red_B[i] = grad_h * dtu[i];
                red_C[i] = dy[i] * h[i];
                r = decay[i] * grad_h;
            }
            if (lane == 0) carry[n] = r_chunk_next;  // all lanes read carry[n] before the shuffles
#pragma unroll
            for (int offset = 16; offset > 0; offset /= 2) dA_part += __shfl_xor_sync(KG_FULL_MASK, dA_part, offset);
            if (lane == 0) dA_smem[warp][n] += dA_part;

            // dB, dC: sum the block's channels, one atomic per (state, timestep).
            __syncthreads();
            for (int p = (int)threadIdx.x; p < kChunk; p += kWarps * 32) {
                const int slot = p + p / kItems;  // lane (p / kItems), item (p % kItems), padded
                float sum_B = 0.f, sum_C = 0.f;
#pragma unroll
                for (int w = 0; w < kWarps; ++w) {
                    sum_B += reduce_smem[0][w][slot];
                    sum_C += reduce_smem[1][w][slot];
                }
                if (t0 + p < L) {
                    atomicAdd(dB_row0 + (long long)n * L + t0 + p, sum_B);
                    atomicAdd(dC_row0 + (long long)n * L + t0 + p, sum_C);
                }
            }
            __syncthreads();
        }
        __syncwarp();

        // Per element: ddelta (through softplus: sigmoid(x) = -expm1(-softplus(x))), dz, du.
        float dd[kItems];
#pragma unroll
        for (int i = 0; i < kItems; ++i) {
            dd[i] = delta_softplus ? ddt[i] * -expm1f(-dt[i]) : ddt[i];
            dbias_part += i < valid ? dd[i] : 0.f;
        }
        InIO::store(ddelta + row * L + t_lane, valid, in_vec, dd);
        InIO::store(du + row * L + t_lane, valid, in_vec, dux);
        if (z) {
            float zz[kItems], dzz[kItems];
            InIO::load(z + row * L + t_lane, valid, in_vec, zz);
            InIO::load(dout + row * L + t_lane, valid, in_vec, dzz);
#pragma unroll
            for (int i = 0; i < kItems; ++i) {
                const float sig = kg_sigmoid(zz[i]);
                dzz[i] *= y[i] * sig * fmaf(zz[i], 1.f - sig, 1.f);
            }
            InIO::store(dz + row * L + t_lane, valid, in_vec, dzz);
        }
    }

    // Per channel: dinitial_state (R leaving chunk 0 = exp(dt_0 A) G_0), dA, dD, ddelta_bias.
    for (int n = lane; n < kN; n += 32) {
        if (dinitial_state) dinitial_state[row * kN + n] = carry[n];
        atomicAdd(dA + (long long)d * kN + n, dA_smem[warp][n]);
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) {
        dD_part += __shfl_xor_sync(KG_FULL_MASK, dD_part, offset);
        dbias_part += __shfl_xor_sync(KG_FULL_MASK, dbias_part, offset);
    }
    if (lane == 0) {
        if (dD) atomicAdd(dD + d, dD_part);
        if (ddelta_bias) atomicAdd(ddelta_bias + d, dbias_part);
    }
}

// ---------------------------------------------------------------------------------------------
// Backward, channel layout: the forward's channel layout run in reverse (math as above). A thread
// owns kS = kN / kSplit states of one channel; the block's channels (all of one group) share each
// CHECKPOINT_STEPS-step segment of B/C, staged from pack_bc's fp32 [batch, G, l_pad, 2, kNP]
// buffer into shared memory. Segments are walked backwards from the forward's checkpoints
// ([batch, dim, ceil(L / 64), N], the state entering each segment):
//   pass 1  from the checkpoint, the state entering each group of kSteps steps (to shared memory),
//           and every step's dt and dt * u (to shared memory, for pass 2);
//   pass 2  groups backwards: the group's steps recomputed with every h_t and exp(dt_t A) kept in
//           registers, then the adjoint r <- exp(dt_t A) (C_t dy_t + r) in reverse, every
//           gradient term formed in the same pass.
// Two exps per (step, state). Per-step work (softplus, loads, du/ddelta/dz) is divided among a
// channel's kSplit lanes (kSub steps each) and exchanged through shared memory or a
// transpose-reduce, so it is not repeated kSplit times. dB_t and dC_t are sums over channels: per
// step a transpose-reduce across the warp (one shuffle per value, not five), then the block's
// warps summed through shared memory into one partial per (block, step, state), written to
// dBC_part; torch sums the partials (deterministic, no atomics). dA, dD, ddelta_bias: per
// (batch, channel) partials, summed over the batch by torch.
// ---------------------------------------------------------------------------------------------

// kCount consecutive floats of shared memory (16- or 8-byte aligned when kCount allows).
template <int kCount>
__device__ __forceinline__ void kg_load_shared(const float* p, float (&out)[kCount]) {
    if constexpr (kCount % 4 == 0) {
#pragma unroll
        for (int v = 0; v < kCount / 4; ++v) {
            const float4 q = reinterpret_cast<const float4*>(p)[v];
            out[4 * v] = q.x; out[4 * v + 1] = q.y; out[4 * v + 2] = q.z; out[4 * v + 3] = q.w;
        }
    } else if constexpr (kCount % 2 == 0) {
#pragma unroll
        for (int v = 0; v < kCount / 2; ++v) {
            const float2 q = reinterpret_cast<const float2*>(p)[v];
            out[2 * v] = q.x; out[2 * v + 1] = q.y;
        }
    } else {
#pragma unroll
        for (int k = 0; k < kCount; ++k) out[k] = p[k];
    }
}

// kItems consecutive elements of a row, loaded ahead of use: raw storage values, indices clamped
// into the row (L >= 1) so that the loads carry no branch and nothing waits on them until get().
template <typename T, int kItems>
struct KgRowAhead {
    typename T::storage raw[kItems];
    __device__ __forceinline__ void load(const typename T::storage* __restrict__ row, int t, int L) {
#pragma unroll
        for (int i = 0; i < kItems; ++i) raw[i] = row[t + i < L ? t + i : L - 1];
    }
    // Element i as float, 0 at and past `valid`.
    __device__ __forceinline__ float get(int i, int valid) const { return i < valid ? T::to_float(raw[i]) : 0.f; }
};

template <typename InT, int kN, int kSplit, int kThreads, int kSteps, int kMinBlocks>
__global__ void __launch_bounds__(kThreads, kMinBlocks)
selective_scan_bwd_channel_kernel(const typename InT::storage* __restrict__ u,      // [batch, dim, L]
                                  const typename InT::storage* __restrict__ delta,  // [batch, dim, L]
                                  const float* __restrict__ A,                      // [dim, N]
                                  const float* __restrict__ BC,                     // [batch or 1, G, l_pad, 2, kNP]
                                  const float* __restrict__ D,                      // [dim] or null
                                  const typename InT::storage* __restrict__ z,      // [batch, dim, L] or null
                                  const float* __restrict__ delta_bias,             // [dim] or null
                                  const float* __restrict__ checkpoints,            // [batch, dim, ceil(L / 64), N]
                                  const typename InT::storage* __restrict__ dout,   // [batch, dim, L]
                                  const float* __restrict__ dlast_state,            // [batch, dim, N] or null
                                  typename InT::storage* __restrict__ du,           // [batch, dim, L]
                                  typename InT::storage* __restrict__ ddelta,       // [batch, dim, L]
                                  typename InT::storage* __restrict__ dz,           // [batch, dim, L] or null
                                  float* __restrict__ dBC_part,   // [batch, G, blocks or 1, l_pad/kSteps, kSteps, 2, N]
                                  float* __restrict__ dA_part,                      // [batch, dim, N]
                                  float* __restrict__ dD_part,                      // [batch, dim] or null
                                  float* __restrict__ dbias_part,                   // [batch, dim] or null
                                  float* __restrict__ dinitial_state,               // [batch, dim, N] or null
                                  int dim, int L, int l_pad, int groups, int bc_batch_shared, int delta_softplus,
                                  int atomic_dbc) {   // 1: dBC_part has one zeroed partial, added to atomically
    static_assert(kN % kSplit == 0 && (kSplit & (kSplit - 1)) == 0 && kSplit <= 32, "kSplit: power of 2 dividing N");
    static_assert(kThreads % 32 == 0 && kThreads % kSplit == 0, "kThreads: whole warps and channels");
    constexpr int kSeg = 64;                        // CHECKPOINT_STEPS
    static_assert(kSeg % kSteps == 0 && (kSteps & (kSteps - 1)) == 0, "kSteps: a power of two dividing 64");
    constexpr int kNP = kg_packed_states(kN);
    constexpr int kS = kN / kSplit;
    constexpr int kWarps = kThreads / 32;
    constexpr int kChannels = kThreads / kSplit;
    constexpr int kGroups = kSeg / kSteps;
    constexpr int kSub = kSteps >= kSplit ? kSteps / kSplit : 1;   // a split lane's share of a group's steps
    // dB/dC: a step's 2 kS terms (zero padded to a power of two) summed over the warp's channels.
    constexpr int kCols = kg_pow2_ceil(2 * kS);
    constexpr int kColStages = kg_log2_floor(32 / kSplit) < kg_log2_floor(kCols) ? kg_log2_floor(32 / kSplit)
                                                                                   : kg_log2_floor(kCols);
    typedef KgTransposeSum<kCols, kSplit, kColStages, false> ColumnSum;
    constexpr int kShare = (32 / kSplit) >> kColStages;   // lanes of a warp still holding the same columns
    typedef KgRowIO<InT, kSub> SubIO;
    typedef typename InT::storage S;

    __shared__ float4 bc_vec[kSeg * 2 * kNP / 4];                 // float4: 16-byte aligned rows
    float (*bc_smem)[2][kNP] = reinterpret_cast<float (*)[2][kNP]>(bc_vec);
    __shared__ float start_smem[kGroups][kS][kThreads];            // [group][state][thread]: conflict-free
    __shared__ float dt_smem[2][kSeg][kChannels];                  // dt, dt * u of the segment's steps
    __shared__ float dy_smem[kSteps][kChannels];                   // dy of the group's steps
    __shared__ float sum_smem[kSteps][kWarps][ColumnSum::kLeft][32];

    const int tid = (int)threadIdx.x;
    const int lane = tid % 32, warp = tid / 32, part = tid % kSplit, channel = tid / kSplit;
    const int dpg = dim / groups;
    const int blocks_per_group = (dpg + kChannels - 1) / kChannels;
    const int b = (int)blockIdx.x / (groups * blocks_per_group);
    const int g = ((int)blockIdx.x / blocks_per_group) % groups;
    const int block = (int)blockIdx.x % blocks_per_group;
    const int d_local = block * kChannels + channel;
    // Idle threads (past the group's channels) shadow its last channel with dy = 0 and no
    // dlast_state, so every gradient term they form is 0; they join the staging and the sums.
    const bool active = d_local < dpg;
    const int d = g * dpg + (active ? d_local : dpg - 1);
    const long long row = (long long)b * dim + d;
    const KgForwardRow<InT, kSub> io(u, delta, z, du, D, delta_bias, row, d, L);
    const S* dout_row = dout + row * L;
    S* ddelta_row = ddelta + row * L;
    S* dz_row = dz ? dz + row * L : nullptr;
    const bool ddelta_vec = SubIO::aligned(ddelta, L);
    const bool dz_vec = dz ? SubIO::aligned(dz, L) : false;
    const long long bc_group = (long long)l_pad * 2 * kNP;
    const float* bc_row = BC + (bc_batch_shared ? 0 : (long long)b * groups * bc_group) + g * bc_group;
    float* part_row = dBC_part + (((long long)b * groups + g) * (atomic_dbc ? 1 : blocks_per_group)
                                  + (atomic_dbc ? 0 : block)) * (long long)l_pad * 2 * kN;
    const int s0 = part * kS;
    const int sub0 = part * kSub;                  // this lane's first step of a group
    const bool sub_lane = sub0 < kSteps;           // false only when kSplit > kSteps
    const int n_ckpt = (L + kSeg - 1) / kSeg;

    float A2[kS], r[kS], dA[kS];    // r: exp(dt_{t+1} A) dL/dh_{t+1}, the adjoint carried backwards
#pragma unroll
    for (int s = 0; s < kS; ++s) {
        A2[s] = A[(long long)d * kN + s0 + s] * KG_LOG2E;
        r[s] = dlast_state && active ? dlast_state[row * kN + s0 + s] : 0.f;
        dA[s] = 0.f;
    }
    float dD_sum = 0.f, dbias_sum = 0.f;           // over this lane's steps; the split lanes add up at the end

#pragma unroll 1
    for (int seg = n_ckpt - 1; seg >= 0; --seg) {
        const int seg_start = seg * kSeg;
        const int n_groups = ((L - seg_start < kSeg ? L - seg_start : kSeg) + kSteps - 1) / kSteps;
        __syncthreads();   // the previous segment's reads of shared memory are done
        {
            const float4* src = reinterpret_cast<const float4*>(bc_row + (long long)seg_start * 2 * kNP);
            for (int k = tid; k < kSeg * 2 * kNP / 4; k += kThreads) bc_vec[k] = src[k];
        }
        float h[kS];
        const float* ckpt = checkpoints + (row * n_ckpt + seg) * kN + s0;
#pragma unroll
        for (int s = 0; s < kS; ++s) h[s] = ckpt[s];
        __syncthreads();

        // Pass 1: each group's start state, and its steps' dt (this lane's kSub of them computed,
        // all read back after the warp barrier). delta and u are loaded a group ahead; dout and z
        // of pass 2's first group already here, so that pass 1 hides their latency.
        KgRowAhead<InT, kSub> delta_ahead, u_ahead, dout_ahead, z_ahead;
        if (sub_lane) {
            delta_ahead.load(io.delta, seg_start + sub0, L);
            u_ahead.load(io.u, seg_start + sub0, L);
            dout_ahead.load(dout_row, seg_start + (n_groups - 1) * kSteps + sub0, L);
            if (io.z) z_ahead.load(io.z, seg_start + (n_groups - 1) * kSteps + sub0, L);
        }
#pragma unroll 1
        for (int grp = 0; grp < n_groups; ++grp) {
            const int step0 = grp * kSteps;        // within the segment
#pragma unroll
            for (int s = 0; s < kS; ++s) start_smem[grp][s][tid] = h[s];
            if (sub_lane) {
                const int t = seg_start + step0 + sub0;
                float dt[kSub], dtu[kSub];
#pragma unroll
                for (int i = 0; i < kSub; ++i) {
                    dt[i] = delta_ahead.get(i, L - t);
                    dtu[i] = u_ahead.get(i, L - t);
                }
                if (grp + 1 < n_groups) {
                    delta_ahead.load(io.delta, t + kSteps, L);
                    u_ahead.load(io.u, t + kSteps, L);
                }
                kg_prepare_dt(dt, dtu, io.bias, delta_softplus, L - t);
#pragma unroll
                for (int i = 0; i < kSub; ++i) {
                    dt_smem[0][step0 + sub0 + i][channel] = dt[i];
                    dt_smem[1][step0 + sub0 + i][channel] = dtu[i];
                }
            }
            __syncwarp();
            if (grp == n_groups - 1) break;          // the last group's exit state is not needed
#pragma unroll
            for (int i = 0; i < kSteps; ++i) {
                const float dt = dt_smem[0][step0 + i][channel], dtu = dt_smem[1][step0 + i][channel];
                float Bt[kS];
                kg_load_shared(&bc_smem[step0 + i][0][s0], Bt);
#pragma unroll
                for (int s = 0; s < kS; ++s) h[s] = fmaf(kg_exp2(dt * A2[s]), h[s], dtu * Bt[s]);
            }
        }

        // Pass 2: groups backwards. dout and z are loaded a group ahead, u at the group's start
        // (it is used at its end).
#pragma unroll 1
        for (int grp = n_groups - 1; grp >= 0; --grp) {
            const int step0 = grp * kSteps;
            const int t0 = seg_start + step0;
            const int t = t0 + sub0;               // this lane's first step
            KgRowAhead<InT, kSub> u_now;
            float dz_factor[kSub];                 // dz = dz_factor * y: dout * silu'(z)
            if (sub_lane) {
                u_now.load(io.u, t, L);
#pragma unroll
                for (int i = 0; i < kSub; ++i) {
                    const float go = dout_ahead.get(i, L - t);
                    float dy = go;
                    if (io.z) {
                        const float zz = z_ahead.get(i, L - t);
                        const float sig = kg_sigmoid(zz);
                        dy *= zz * sig;
                        dz_factor[i] = go * sig * fmaf(zz, 1.f - sig, 1.f);
                    }
                    dy_smem[sub0 + i][channel] = active ? dy : 0.f;
                }
                if (grp > 0) {
                    dout_ahead.load(dout_row, t - kSteps, L);
                    if (io.z) z_ahead.load(io.z, t - kSteps, L);
                }
            }
            __syncwarp();
            // The group's forward from its start state, every step's state and decay kept.
            float hist[kSteps][kS], decay[kSteps][kS], h0[kS];
#pragma unroll
            for (int s = 0; s < kS; ++s) h0[s] = start_smem[grp][s][tid];
#pragma unroll
            for (int i = 0; i < kSteps; ++i) {
                // dt, dt * u (and dy below) are read from shared memory where used: held for the
                // whole group they cost registers the states need (spills at occupancy 16).
                const float dt = dt_smem[0][step0 + i][channel], dtu = dt_smem[1][step0 + i][channel];
                float Bt[kS];
                kg_load_shared(&bc_smem[step0 + i][0][s0], Bt);
#pragma unroll
                for (int s = 0; s < kS; ++s) {
                    decay[i][s] = kg_exp2(dt * A2[s]);
                    hist[i][s] = fmaf(decay[i][s], i > 0 ? hist[i - 1][s] : h0[s], dtu * Bt[s]);
                }
            }

            // The adjoint, steps in reverse; then du, ddelta (and dz) of this lane's steps. With z as
            // a compile-time flag (two copies) so that without z nothing is spent on y.
            __syncthreads();   // every thread is done reading sum_smem of the previous group
            auto adjoint = [&](auto with_z) {
                constexpr bool kZ = decltype(with_z)::value;
                // Per step, over this lane's states: gB = sum_n G B, gPA = sum_n G exp(dt A) h_prev A2
                // and, with z, yC = sum_n C h. Summed over the split lanes by transpose-reduces, lane p
                // keeping those of its own steps: step_vals [step - p * kSub][gB, gPA], y_vals [step - p * kSub].
                typedef KgTransposeSum<kSplit * 2 * kSub, kSplit / 2, kg_log2_floor(kSplit), true> StepSum;
                typedef KgTransposeSum<kSplit * kSub, kSplit / 2, kg_log2_floor(kSplit), true> YSum;
                float step_vals[kSplit * 2 * kSub], y_vals[kZ ? kSplit * kSub : 1];
#pragma unroll
                for (int k = 0; k < kSplit * 2 * kSub; ++k) step_vals[k] = 0.f;
#pragma unroll
                for (int k = 0; k < (kZ ? kSplit * kSub : 1); ++k) y_vals[k] = 0.f;
#pragma unroll
                for (int i = kSteps - 1; i >= 0; --i) {
                    const float dt = dt_smem[0][step0 + i][channel], dtu = dt_smem[1][step0 + i][channel];
                    const float dy = dy_smem[i][channel];
                    float Bt[kS], Ct[kS], cols[kCols];
                    kg_load_shared(&bc_smem[step0 + i][0][s0], Bt);
                    kg_load_shared(&bc_smem[step0 + i][1][s0], Ct);
                    float gb = 0.f, gpa = 0.f, yc = 0.f;
#pragma unroll
                    for (int s = 0; s < kS; ++s) {
                        const float grad = fmaf(Ct[s], dy, r[s]);     // dL/dh_t
                        cols[s] = grad * dtu;                          // dB_t term
                        cols[kS + s] = dy * hist[i][s];                // dC_t term
                        gb = fmaf(grad, Bt[s], gb);
                        r[s] = decay[i][s] * grad;
                        const float gp = r[s] * (i > 0 ? hist[i - 1][s] : h0[s]);   // G exp(dt A) h_prev
                        gpa = fmaf(gp, A2[s], gpa);
                        dA[s] = fmaf(gp, dt, dA[s]);
                        if constexpr (kZ) yc = fmaf(Ct[s], hist[i][s], yc);
                    }
#pragma unroll
                    for (int k = 2 * kS; k < kCols; ++k) cols[k] = 0.f;
                    ColumnSum::reduce(cols, lane);
#pragma unroll
                    for (int k = 0; k < ColumnSum::kLeft; ++k) sum_smem[i][warp][k][lane] = cols[k];
                    step_vals[2 * i] = gb;                 // = [(i / kSub) * 2 kSub + 2 (i % kSub)]
                    step_vals[2 * i + 1] = gpa;
                    if constexpr (kZ) y_vals[i] = yc;
                }
                StepSum::reduce(step_vals, lane);
                if constexpr (kZ) YSum::reduce(y_vals, lane);

                // Per element (sigmoid(x) = -expm1(-softplus(x)) for softplus's derivative).
                if (sub_lane) {
                    float uu[kSub], dux[kSub], ddt[kSub], dzz[kSub];
#pragma unroll
                    for (int i = 0; i < kSub; ++i) uu[i] = u_now.get(i, L - t);
#pragma unroll
                    for (int i = 0; i < kSub; ++i) {
                        const float gB = step_vals[2 * i], gPA = step_vals[2 * i + 1];
                        const float dt_i = dt_smem[0][step0 + sub0 + i][channel];
                        const float dy_i = dy_smem[sub0 + i][channel];
                        dux[i] = fmaf(io.D, dy_i, gB * dt_i);
                        float v = fmaf(gPA, 0.6931471805599453f, gB * uu[i]);
                        if (delta_softplus) v *= -expm1f(-dt_i);
                        ddt[i] = i < L - t ? v : 0.f;
                        dbias_sum += ddt[i];
                        dD_sum = fmaf(dy_i, uu[i], dD_sum);
                        if constexpr (kZ) dzz[i] = dz_factor[i] * fmaf(io.D, uu[i], y_vals[i]);
                    }
                    if (active) {
                        SubIO::store(io.out + t, L - t, io.out_vec, dux);
                        SubIO::store(ddelta_row + t, L - t, ddelta_vec, ddt);
                        if constexpr (kZ) SubIO::store(dz_row + t, L - t, dz_vec, dzz);
                    }
                }
            };
            if (io.z) adjoint(KgBool<true>());
            else adjoint(KgBool<false>());

            // dB_t, dC_t of the block: the warps' column sums added in a fixed order. Output q is
            // (step, B or C, state), state fastest: consecutive threads read different lanes' sums
            // (no bank conflicts) and write consecutive addresses.
            __syncthreads();
            for (int q = tid; q < 2 * kSteps * kN; q += kThreads) {
                const int n = q % kN, which = (q / kN) % 2, i = q / (2 * kN);
                const int col = which * kS + n % kS;
                const int lane0 = n / kS + ColumnSum::lane_bits(col / ColumnSum::kLeft);
                float total = 0.f;
#pragma unroll
                for (int w = 0; w < kWarps; ++w)
#pragma unroll
                    for (int m = 0; m < kShare; ++m)
                        total += sum_smem[i][w][col % ColumnSum::kLeft][lane0 + ((m * kSplit) << kColStages)];
                if (atomic_dbc) atomicAdd(part_row + (long long)t0 * 2 * kN + q, total);
                else part_row[(long long)t0 * 2 * kN + q] = total;
            }
        }
    }

#pragma unroll
    for (int offset = kSplit / 2; offset > 0; offset /= 2) {
        dD_sum += __shfl_xor_sync(KG_FULL_MASK, dD_sum, offset);
        dbias_sum += __shfl_xor_sync(KG_FULL_MASK, dbias_sum, offset);
    }
    if (active) {
#pragma unroll
        for (int s = 0; s < kS; ++s) {
            dA_part[row * kN + s0 + s] = dA[s];
            if (dinitial_state) dinitial_state[row * kN + s0 + s] = r[s];
        }
        if (part == 0) {
            if (dD_part) dD_part[row] = dD_sum;
            if (dbias_part) dbias_part[row] = dbias_sum;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decode step: one token, the state updated in place.
//
// A channel's N states are spread over kTPC lanes (a power of two <= 32), kSPT consecutive states
// per lane per round (float4 loads of state and A when N and kSPT are multiples of 4 and the
// pointers are aligned); y is reduced over the kTPC lanes with xor shuffles. Channels are
// (batch, dim) flattened, kThreads / kTPC of them per block. Memory bound: the state is read and
// written once.
// ---------------------------------------------------------------------------------------------

template <int kN, int kSPT>
struct KgStepLayout {
    static constexpr int kNeed = (kN + kSPT - 1) / kSPT;                  // lanes to cover N once
    static constexpr int kTPC = kNeed >= 32 ? 32 : kg_pow2_ceil(kNeed);   // lanes per channel
    static constexpr int kRounds = (kN + kTPC * kSPT - 1) / (kTPC * kSPT);
    static constexpr bool kVec = (kN % 4 == 0) && (kSPT % 4 == 0);
};

template <typename InT, typename WT, int kN, int kThreads, int kSPT>
__global__ void __launch_bounds__(kThreads)
selective_state_update_kernel(float* __restrict__ state,                   // [batch, dim, N]
                              const typename InT::storage* __restrict__ x,   // [batch, dim]
                              const typename InT::storage* __restrict__ dt,  // [batch, dim]
                              const float* __restrict__ A,                   // [dim, N]
                              const typename WT::storage* __restrict__ Bm,   // [batch, G, N]
                              const typename WT::storage* __restrict__ Cm,   // [batch, G, N]
                              const float* __restrict__ D,                   // [dim] or null
                              const typename InT::storage* __restrict__ z,   // [batch, dim] or null
                              const float* __restrict__ dt_bias,             // [dim] or null
                              typename InT::storage* __restrict__ out,       // [batch, dim]
                              int batch, int dim, int groups, int dt_softplus, int vec_ok) {
    typedef KgStepLayout<kN, kSPT> Layout;
    constexpr int kTPC = Layout::kTPC;
    constexpr int kChannelsPerBlock = kThreads / kTPC;
    static_assert(kThreads % 32 == 0, "threads must be a multiple of 32");

    const int r = (int)threadIdx.x % kTPC;
    const long long c = (long long)blockIdx.x * kChannelsPerBlock + (int)threadIdx.x / kTPC;
    const bool active = c < (long long)batch * dim;
    // Inactive lanes still take part in the reduction shuffles below (full-warp masks).
    float y = 0.f, x_c = 0.f;
    int d = 0;
    if (active) {
        const int b = (int)(c / dim);
        d = (int)(c % dim);
        const int g = d / (dim / groups);
        float dt_c = InT::to_float(dt[c]) + (dt_bias ? dt_bias[d] : 0.f);
        if (dt_softplus) dt_c = kg_softplus(dt_c);
        x_c = InT::to_float(x[c]);
        const float dt_x = dt_c * x_c;
        const float dt2 = dt_c * KG_LOG2E;
        float* s_row = state + c * kN;
        const float* A_row = A + (long long)d * kN;
        const typename WT::storage* B_row = Bm + ((long long)b * groups + g) * kN;
        const typename WT::storage* C_row = Cm + ((long long)b * groups + g) * kN;
#pragma unroll
        for (int round = 0; round < Layout::kRounds; ++round) {
            const int n0 = (round * kTPC + r) * kSPT;
            float h[kSPT], a[kSPT];
            const bool vector = Layout::kVec && vec_ok && n0 + kSPT <= kN;
            if (vector) {
#pragma unroll
                for (int j = 0; j < kSPT; j += 4) {
                    const float4 hv = *reinterpret_cast<const float4*>(s_row + n0 + j);
                    const float4 av = *reinterpret_cast<const float4*>(A_row + n0 + j);
                    h[j] = hv.x; h[j + 1] = hv.y; h[j + 2] = hv.z; h[j + 3] = hv.w;
                    a[j] = av.x; a[j + 1] = av.y; a[j + 2] = av.z; a[j + 3] = av.w;
                }
            } else {
#pragma unroll
                for (int j = 0; j < kSPT; ++j) {
                    h[j] = n0 + j < kN ? s_row[n0 + j] : 0.f;
                    a[j] = n0 + j < kN ? A_row[n0 + j] : 0.f;
                }
            }
#pragma unroll
            for (int j = 0; j < kSPT; ++j) {
                const int n = n0 + j;
                if (n < kN) {
                    h[j] = fmaf(kg_exp2(dt2 * a[j]), h[j], dt_x * WT::to_float(B_row[n]));
                    y = fmaf(WT::to_float(C_row[n]), h[j], y);
                }
            }
            if (vector) {
#pragma unroll
                for (int j = 0; j < kSPT; j += 4) {
                    float4 hv;
                    hv.x = h[j]; hv.y = h[j + 1]; hv.z = h[j + 2]; hv.w = h[j + 3];
                    *reinterpret_cast<float4*>(s_row + n0 + j) = hv;
                }
            } else {
#pragma unroll
                for (int j = 0; j < kSPT; ++j)
                    if (n0 + j < kN) s_row[n0 + j] = h[j];
            }
        }
    }
#pragma unroll
    for (int offset = kTPC / 2; offset > 0; offset /= 2) y += __shfl_xor_sync(KG_FULL_MASK, y, offset);
    if (active && r == 0) {
        if (D) y = fmaf(D[d], x_c, y);
        if (z) y *= kg_silu(InT::to_float(z[c]));
        out[c] = InT::from_float(y);
    }
}
