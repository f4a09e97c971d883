// Runs the CUDA kernels of host/src/kernels/cuda/kernels.cu on the CPU, compiled as plain C++ (each
// kernel's grid-stride loop becomes an ordinary loop), in the same sequence of launches as
// host/src/kernels/cuda.rs. Driven by host/tests/cuda_kernels.rs: reads one case from stdin, writes the
// results to stdout, all little-endian binary (int32 sizes, float32 arrays).
#include "../src/kernels/cuda/kernels.cu"

#include <cstdio>
#include <cstdlib>
#include <vector>

static int read_int() {
    int v;
    if (fread(&v, sizeof v, 1, stdin) != 1) exit(2);
    return v;
}

static std::vector<float> read_floats(long long n) {
    std::vector<float> v(n);
    if (n && fread(v.data(), sizeof(float), n, stdin) != (size_t)n) exit(2);
    return v;
}

static void write(const std::vector<float> &v) { fwrite(v.data(), sizeof(float), v.size(), stdout); }

// as `parts` in cuda.rs
static int parts(long long count) {
    long long p = count / 32;
    return (int)(p < 1 ? 1 : p > 1024 ? 1024 : p);
}

static void depthwise() {
    const int n = read_int(), c = read_int(), h = read_int(), w = read_int(), k = read_int(),
              s = read_int(), ho = read_int(), wo = read_int();
    const auto x = read_floats((long long)n * c * h * w), wt = read_floats((long long)c * k * k),
               dy = read_floats((long long)n * c * ho * wo);
    std::vector<float> y((long long)n * c * ho * wo), dx(x.size()), dw((long long)c * k * k);
    fbnet_dw_forward(x.data(), wt.data(), y.data(), n * c, c, h, w, ho, wo, k, s);
    fbnet_dw_input_grad(dy.data(), wt.data(), dx.data(), n * c, c, h, w, ho, wo, k, s);
    const int p = parts((long long)n * ho * wo);
    std::vector<float> partial(dw.size() * p);
    fbnet_dw_weight_grad_partial(x.data(), dy.data(), partial.data(), n, c, h, w, ho, wo, k, s, p);
    fbnet_sum_rows(partial.data(), dw.data(), (int)dw.size(), p);
    write(y), write(dx), write(dw);
}

static void batch_norm() {
    const int n = read_int(), c = read_int(), plane = read_int(), relu = read_int();
    const float eps = read_floats(1)[0];
    const long long len = (long long)n * c * plane;
    const auto x = read_floats(len), gamma = read_floats(c), beta = read_floats(c),
               dy = read_floats(len);
    const int p = parts((long long)n * plane);
    const float count = (float)n * plane;
    std::vector<float> partial((long long)2 * c * p), mean(c), var(c), inv_std(c), y(len);
    fbnet_bn_sums_partial(x.data(), nullptr, partial.data(), n, c, plane, p);
    fbnet_sum_rows(partial.data(), mean.data(), c, p);
    fbnet_bn_finish(mean.data(), nullptr, c, count, eps);
    fbnet_bn_sums_partial(x.data(), mean.data(), partial.data(), n, c, plane, p);
    fbnet_sum_rows(partial.data(), var.data(), c, p);
    fbnet_bn_finish(var.data(), inv_std.data(), c, count, eps);
    fbnet_bn_apply(x.data(), mean.data(), inv_std.data(), gamma.data(), beta.data(), y.data(), n, c,
                   plane, relu);
    // backward into one buffer [dx | dgamma | dbeta], as bn_backward
    std::vector<float> out(len + 2 * c);
    fbnet_bn_grad_partial(x.data(), y.data(), dy.data(), mean.data(), inv_std.data(), partial.data(), n,
                          c, plane, relu, p);
    fbnet_sum_rows(partial.data(), out.data() + len, 2 * c, p);
    fbnet_bn_input_grad(x.data(), y.data(), dy.data(), mean.data(), inv_std.data(), gamma.data(),
                        out.data() + len, out.data(), n, c, plane, relu);
    write(y), write(mean), write(var), write(out);
}

int main() {
    switch (read_int()) {
    case 0: depthwise(); break;
    case 1: batch_norm(); break;
    default: return 3;
    }
    return fflush(stdout) == 0 ? 0 : 4;
}
