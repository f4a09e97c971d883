// The CUDA kernels behind `host/src/kernels` on a GPU: depthwise convolution forward and both gradients,
// training-mode batch norm (optionally fused with its ReLU) forward and backward.
//
// One source, two compilers: build.rs runs nvcc on it for the `cuda` feature (PTX embedded in the
// binary), and the CPU test `host/tests/cuda_kernels.rs` compiles it as plain C++ and runs every kernel with
// `FB_LOOP` as an ordinary loop, so the index arithmetic is checked against the CPU kernels on machines
// without a GPU. Hence the rules kept here: every kernel is a grid-stride loop over independent outputs
// (no shared memory, no synchronisation inside a kernel), and every reduction is two kernels, interleaved
// partial sums (neighbouring threads read neighbouring addresses) then a fixed-order sum of the partials,
// so a result does not depend on how the GPU schedules the threads and a run repeats bit for bit.
//
// Layouts: activations NCHW contiguous, a depthwise filter [c, 1, k, k], "same" padding k / 2 (as the
// ONNX graphs of mobile-core). Sizes are int (the largest tensor of the 224 super net at batch 64 holds
// 77 M values); linear indices are long long.

#ifdef __CUDACC__
#define FB_KERNEL extern "C" __global__
#define FB_LOOP(i, n)                                                                              \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (long long)(n);        \
         i += (long long)blockDim.x * gridDim.x)
#else
#include <cmath>
#define FB_KERNEL extern "C"
#define FB_LOOP(i, n) for (long long i = 0; i < (long long)(n); ++i)
#endif

// ---- depthwise convolution -------------------------------------------------------------------------

// y[pl, oy, ox] = sum over taps of x[pl, oy*s - k/2 + ky, ox*s - k/2 + kx] * w[pl % c, ky, kx], for every
// plane pl = image * c + channel.
FB_KERNEL void fbnet_dw_forward(const float *__restrict__ x, const float *__restrict__ w,
                                float *__restrict__ y, int planes, int c, int h, int wd, int ho,
                                int wo, int k, int s) {
    const int p = k / 2;
    FB_LOOP(i, (long long)planes * ho * wo) {
        const int ox = (int)(i % wo);
        const long long t = i / wo;
        const int oy = (int)(t % ho);
        const long long pl = t / ho;
        const float *xp = x + pl * h * wd;
        const float *wp = w + (long long)(pl % c) * k * k;
        const int iy0 = oy * s - p, ix0 = ox * s - p;
        float acc = 0.f;
        for (int ky = 0; ky < k; ++ky) {
            const int iy = iy0 + ky;
            if (iy < 0 || iy >= h) continue;
            for (int kx = 0; kx < k; ++kx) {
                const int ix = ix0 + kx;
                if (ix < 0 || ix >= wd) continue;
                acc += xp[(long long)iy * wd + ix] * wp[ky * k + kx];
            }
        }
        y[i] = acc;
    }
}

// dx[pl, iy, ix] = sum of dy[pl, oy, ox] * w[pl % c, ky, kx] over the outputs whose window covers
// (iy, ix): oy * s = iy + k/2 - ky. One thread per input value gathers, so nothing is added concurrently.
FB_KERNEL void fbnet_dw_input_grad(const float *__restrict__ dy, const float *__restrict__ w,
                                   float *__restrict__ dx, int planes, int c, int h, int wd, int ho,
                                   int wo, int k, int s) {
    const int p = k / 2;
    FB_LOOP(i, (long long)planes * h * wd) {
        const int ix = (int)(i % wd);
        const long long t = i / wd;
        const int iy = (int)(t % h);
        const long long pl = t / h;
        const float *gp = dy + pl * ho * wo;
        const float *wp = w + (long long)(pl % c) * k * k;
        float acc = 0.f;
        for (int ky = 0; ky < k; ++ky) {
            const int ty = iy + p - ky;
            if (ty < 0 || ty % s != 0 || ty / s >= ho) continue;
            for (int kx = 0; kx < k; ++kx) {
                const int tx = ix + p - kx;
                if (tx < 0 || tx % s != 0 || tx / s >= wo) continue;
                acc += gp[(long long)(ty / s) * wo + tx / s] * wp[ky * k + kx];
            }
        }
        dx[i] = acc;
    }
}

// Partial sums of the filter gradient: partial[(ch * k*k + tap) * parts + j] = sum over the output
// positions q = (image * ho + oy) * wo + ox with q % parts == j of x[..tap..] * dy[q]. Reduce with
// fbnet_sum_rows (rows = c * k * k).
FB_KERNEL void fbnet_dw_weight_grad_partial(const float *__restrict__ x,
                                            const float *__restrict__ dy,
                                            float *__restrict__ partial, int n, int c, int h,
                                            int wd, int ho, int wo, int k, int s, int parts) {
    const int p = k / 2, kk = k * k;
    const long long positions = (long long)n * ho * wo;
    FB_LOOP(i, (long long)c * kk * parts) {
        const int j = (int)(i % parts);
        const long long t = i / parts;
        const int tap = (int)(t % kk), ch = (int)(t / kk);
        const int ky = tap / k, kx = tap % k;
        float acc = 0.f;
        for (long long q = j; q < positions; q += parts) {
            const int ox = (int)(q % wo);
            const long long u = q / wo;
            const int oy = (int)(u % ho);
            const long long b = u / ho;
            const int iy = oy * s - p + ky, ix = ox * s - p + kx;
            if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
            const long long pl = b * c + ch;
            acc += x[(pl * h + iy) * wd + ix] * dy[(pl * ho + oy) * wo + ox];
        }
        partial[i] = acc;
    }
}

// out[r] = sum of partial[r * parts + j] over j, in order.
FB_KERNEL void fbnet_sum_rows(const float *__restrict__ partial, float *__restrict__ out, int rows,
                              int parts) {
    FB_LOOP(r, rows) {
        float acc = 0.f;
        for (int j = 0; j < parts; ++j) acc += partial[r * (long long)parts + j];
        out[r] = acc;
    }
}

// ---- batch norm in training mode ---------------------------------------------------------------------
// Per channel ch, the values a[(b * c + ch) * plane + r] over every image b and position r; the
// reduction index q = b * plane + r is split into `parts` interleaved partial sums as above.

// Partial sums per channel of x (centre == nullptr) or of (x - centre[ch])^2: the mean first, then the
// biased variance around it (two passes, as the CPU kernel, for accuracy on large planes).
FB_KERNEL void fbnet_bn_sums_partial(const float *__restrict__ x, const float *__restrict__ centre,
                                     float *__restrict__ partial, int n, int c, int plane,
                                     int parts) {
    const long long count = (long long)n * plane;
    FB_LOOP(i, (long long)c * parts) {
        const int j = (int)(i % parts), ch = (int)(i / parts);
        const float m = centre ? centre[ch] : 0.f;
        float acc = 0.f;
        for (long long q = j; q < count; q += parts) {
            const float v = x[((q / plane) * c + ch) * plane + q % plane];
            acc += centre ? (v - m) * (v - m) : v;
        }
        partial[i] = acc;
    }
}

// Divides each channel's sum by `count` in place (sums -> mean or biased variance) and, when inv_std
// is given, writes 1 / sqrt(var + eps) there.
FB_KERNEL void fbnet_bn_finish(float *__restrict__ v, float *__restrict__ inv_std, int c,
                               float count, float eps) {
    FB_LOOP(ch, c) {
        v[ch] = v[ch] / count;
        if (inv_std) inv_std[ch] = 1.f / sqrtf(v[ch] + eps);
    }
}

// y = relu?((x - mean) * inv_std * gamma + beta).
FB_KERNEL void fbnet_bn_apply(const float *__restrict__ x, const float *__restrict__ mean,
                              const float *__restrict__ inv_std, const float *__restrict__ gamma,
                              const float *__restrict__ beta, float *__restrict__ y, int n, int c,
                              int plane, int relu) {
    FB_LOOP(i, (long long)n * c * plane) {
        const int ch = (int)((i / plane) % c);
        const float v = (x[i] - mean[ch]) * inv_std[ch] * gamma[ch] + beta[ch];
        y[i] = relu && v < 0.f ? 0.f : v;
    }
}

// Partial sums per channel of g * x_hat and of g, where g is the output gradient with the ReLU's mask
// applied (where y <= 0 nothing passes; relu == 0: g = dy) and x_hat = (x - mean) * inv_std:
// partial[ch * parts + j] and partial[(c + ch) * parts + j]. fbnet_sum_rows (rows = 2c) reduces them to
// [sum g x_hat (c) | sum g (c)], which are gamma's and beta's gradients.
FB_KERNEL void fbnet_bn_grad_partial(const float *__restrict__ x, const float *__restrict__ y,
                                     const float *__restrict__ dy, const float *__restrict__ mean,
                                     const float *__restrict__ inv_std, float *__restrict__ partial,
                                     int n, int c, int plane, int relu, int parts) {
    const long long count = (long long)n * plane;
    FB_LOOP(i, (long long)c * parts) {
        const int j = (int)(i % parts), ch = (int)(i / parts);
        float sg = 0.f, sgx = 0.f;
        for (long long q = j; q < count; q += parts) {
            const long long a = ((q / plane) * c + ch) * plane + q % plane;
            const float g = relu && y[a] <= 0.f ? 0.f : dy[a];
            sg += g;
            sgx += g * (x[a] - mean[ch]) * inv_std[ch];
        }
        partial[(long long)ch * parts + j] = sgx;
        partial[((long long)c + ch) * parts + j] = sg;
    }
}

// dx = gamma * inv_std * (g - mean(g) - x_hat * mean(g x_hat)), with sums = [sum g x_hat (c) | sum g (c)]
// over each channel's n * plane values.
FB_KERNEL void fbnet_bn_input_grad(const float *__restrict__ x, const float *__restrict__ y,
                                   const float *__restrict__ dy, const float *__restrict__ mean,
                                   const float *__restrict__ inv_std,
                                   const float *__restrict__ gamma, const float *sums,
                                   float *dx, int n, int c, int plane, int relu) {
    const float count = (float)n * plane;
    FB_LOOP(i, (long long)n * c * plane) {
        const int ch = (int)((i / plane) % c);
        const float g = relu && y[i] <= 0.f ? 0.f : dy[i];
        const float xh = (x[i] - mean[ch]) * inv_std[ch];
        dx[i] = gamma[ch] * inv_std[ch] * (g - sums[c + ch] / count - xh * (sums[ch] / count));
    }
}
