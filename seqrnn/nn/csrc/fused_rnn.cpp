// GRU and LSTM layers for the CPU with their own forward and backward through time, in the
// shape cuDNN uses: input projections in one GEMM per chunk of steps, one small GEMM per step,
// the weight gradients in one GEMM per chunk. The gate arithmetic of a step is one loop over
// batch x units with no temporary tensors, which the compiler vectorizes (glibc's vector exp
// and tanh). The two cells share the chunking and the states-before-a-chunk helper; they differ
// in the gate loops.
//
// Maths and parameter layout are nn.GRU's (gate blocks r, z, n):
//   r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
//   z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
//   n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
//   h' = (1 - z) * n + z * h
// and nn.LSTM's (gate blocks i, f, g, o):
//   [i, f, g, o] = [sigmoid, sigmoid, tanh, sigmoid](W_ih x + b_ih + W_hh h + b_hh)
//   c' = f * c + i * g,  h' = o * tanh(c')
// Tensors are time-major: x [T, B, I], out [T, B, H].
//
// Memory traffic, not arithmetic, bounds a small RNN on a CPU: the forward keeps only the
// outputs (and an LSTM's cell states); the backward recomputes the gates from them, a chunk of
// steps at a time, with GEMMs that run at full speed (rather than saving 3H or 4H numbers per
// step and reading them back). Only a wide LSTM gains from keeping its activated gates instead
// (the caller chooses: keep_gates), which saves a GEMM per chunk and four exp/tanh per unit.
//
// Mixed precision (bf16 = true, float32 tensors only): every GEMM reads bfloat16 copies of its
// operands. The products through the recurrent weights (the step's, its recomputation in the
// backward, the gradient carried back a step) run as oneDNN's brgemm micro-kernel, which
// accumulates in float32 and writes float32 (StepWeights); the chunk GEMMs (input projection,
// weight and input gradients) go through at::mm, which writes bfloat16. Everything else stays
// float32: states, cell states, gates and their gradients in the gate loops, the weight
// gradients' sums over chunks and the bias gradients. The step loops write the bfloat16 copy of
// the new state the next step's product reads, so no extra pass converts it.

#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <ATen/native/CPUBlas.h>
#include <torch/version.h>

// cpublas::brgemm (bfloat16 operands, float32 output) is in PyTorch from 2.6 on here; older
// builds keep the bfloat16 step products off (bf16_step_products() says false).
#define SEQRNN_HAS_BRGEMM (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 6))

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

// Whether the GEMMs run in a narrower type (mm_t) than the gate arithmetic (scalar_t).
template <typename scalar_t, typename mm_t>
constexpr bool kMixed = !std::is_same_v<scalar_t, mm_t>;

// The conversion in the gate loops (the new state's bfloat16 copy), written on the bits so that
// the compiler vectorizes it (c10::BFloat16's own, with its branch for NaN, kept the loops scalar
// and the bf16 path slower than float32): round to nearest even; -ffast-math assumes no NaNs.
template <typename out_t, typename in_t>
inline out_t narrow_to(in_t v) {
  if constexpr (std::is_same_v<out_t, at::BFloat16>) {
    const float f = v;
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    bits += 0x7FFFu + ((bits >> 16) & 1u);
    return at::BFloat16(uint16_t(bits >> 16), at::BFloat16::from_bits());
  } else {
    return out_t(v);
  }
}

// out (scalar_t) = a @ b, a and b of mm_t.
void mm_into(at::Tensor out, const at::Tensor& a, const at::Tensor& b) {
  if (out.scalar_type() == a.scalar_type()) {
    at::mm_out(out, a, b);
  } else {
    out.copy_(at::mm(a, b));
  }
}

// acc (scalar_t) += a @ b, a and b of mm_t.
void addmm_into(at::Tensor& acc, const at::Tensor& a, const at::Tensor& b) {
  if (acc.scalar_type() == a.scalar_type()) {
    acc.addmm_(a, b);
  } else {
    acc.add_(at::mm(a, b));
  }
}

// out (scalar_t) = bias + x @ w_t: a chunk's input projection, x and w_t of mm_t.
void project_into(at::Tensor out, const at::Tensor& bias, const at::Tensor& x,
                  const at::Tensor& w_t) {
  if (out.scalar_type() == x.scalar_type()) {
    at::addmm_out(out, bias, x, w_t);
  } else {
    at::add_out(out, at::mm(x, w_t), bias);
  }
}

// Mixed: a product through the recurrent weights, out [M, N] (float32) = a [M, K] (bfloat16,
// rows contiguous) x W [K, N], W packed once per kernel call in the pairs layout brgemm reads
// ([K/2, N, 2]: rows 2k and 2k + 1 interleaved; K even). against at::mm in bfloat16, it writes
// float32 (no conversion pass, and the products are not rounded to bfloat16) and skips the
// dispatcher on each of the 784 steps. Long products (a chunk's recomputation) are split by
// rows over the threads.
class StepWeights {
 public:
  StepWeights() = default;
  explicit StepWeights(const at::Tensor& w) : k_(w.size(0)), n_(w.size(1)) {
    TORCH_CHECK(k_ % 2 == 0, "bf16 step products need an even inner size, got ", k_);
    packed_ = w.to(at::kBFloat16).reshape({k_ / 2, 2, n_}).transpose(1, 2).contiguous();
  }
  // out = a W, or out += a W with add.
  void product(const at::Tensor& out, const at::Tensor& a, bool add) const {
    TORCH_CHECK(a.size(1) == k_ && a.stride(1) == 1 && out.stride(1) == 1 && out.size(1) == n_,
                "step product: operands of the wrong shape");
#if SEQRNN_HAS_BRGEMM
    const int64_t rows = a.size(0), lda = a.stride(0), ldc = out.stride(0);
    const auto* a_ptr = a.data_ptr<at::BFloat16>();
    const auto* w_ptr = packed_.data_ptr<at::BFloat16>();
    auto* out_ptr = out.data_ptr<float>();
    at::parallel_for(0, rows, kRowsPerThread, [&](int64_t begin, int64_t end) {
      at::native::cpublas::brgemm(end - begin, n_, k_, lda, n_, ldc, add, a_ptr + begin * lda,
                                  w_ptr, out_ptr + begin * ldc, /*is_vnni=*/true);
      at::native::cpublas::brgemm_release();
    });
#else
    TORCH_CHECK(false, "bf16 step products need PyTorch 2.6 or later (add: ", add, ")");
#endif
  }

 private:
  static constexpr int64_t kRowsPerThread = 512;
  at::Tensor packed_;
  int64_t k_ = 0, n_ = 0;
};

// Mixed: a chunk's input projection runs in bfloat16 only from this many inputs per step on.
// With one input (the pixel) it is a rank-1 update bound by memory, which bfloat16 (a product
// in bfloat16, then added to the bias in float32) made 3.5x slower: 1.0 ms against 0.28 for
// [4096 x 1] x [1 x 512] at one thread; at 32 inputs the two cost the same, at 128 bfloat16
// is 1.5x faster. The input gradients (dx, dW_ih) are bfloat16 GEMMs at every width.
constexpr int64_t kMixedProjectionFromInputs = 32;

// The operands of a chunk's input projection: x [T, B, I] and W_ih^T, as float32 or, mixed and
// wide, their bfloat16 copies (x_mm, w_ih_mm).
template <typename scalar_t, typename mm_t>
std::pair<at::Tensor, at::Tensor> projection_operands(const at::Tensor& x, const at::Tensor& x_mm,
                                                      const at::Tensor& w_ih,
                                                      const at::Tensor& w_ih_mm) {
  if (kMixed<scalar_t, mm_t> && x.size(2) < kMixedProjectionFromInputs) {
    return {x.contiguous(), w_ih.t()};
  }
  return {x_mm, w_ih_mm.t()};
}

// A tensor as the GEMMs read it: itself, or its bfloat16 copy in mixed precision.
template <typename mm_t>
at::Tensor for_mm(const at::Tensor& t) {
  return t.to(c10::CppTypeToScalarType<mm_t>::value);
}

template <typename scalar_t>
inline scalar_t sigmoid(scalar_t v) {
  return scalar_t(1) / (scalar_t(1) + std::exp(-v));
}

// Rows of a step's gate loop each thread takes at least (a parallel region costs microseconds).
int64_t grain(int64_t units) { return std::max<int64_t>(1, 4096 / std::max<int64_t>(units, 1)); }

// The gates of unit j of one row, from its input part gi [3H] and hidden part gh [3H] of the
// pre-activations (r, z, n blocks) and b_hh; hn is the hidden part of n, before r scales it.
template <typename scalar_t>
struct Gates {
  scalar_t r, z, hn, n;
};

template <typename scalar_t>
inline Gates<scalar_t> gates_at(const scalar_t* gi, const scalar_t* gh, const scalar_t* b_hh,
                                int64_t units, int64_t j) {
  Gates<scalar_t> a;
  a.r = sigmoid(gi[j] + gh[j] + b_hh[j]);
  a.z = sigmoid(gi[units + j] + gh[units + j] + b_hh[units + j]);
  a.hn = gh[2 * units + j] + b_hh[2 * units + j];
  a.n = std::tanh(gi[2 * units + j] + a.r * a.hn);
  return a;
}

// Forward gates of one step: gi [B, 3H] (input part, b_ih included), gh [B, 3H] (W_hh h, no
// bias: b_hh [3H] is added here, which saves a copy of it per step) and the previous state
// h [B, H] -> the new state h_new [B, H] (and, mixed, its copy h_mm for the next GEMM).
template <typename scalar_t, typename mm_t>
void forward_gates(const scalar_t* gi, const scalar_t* gh, const scalar_t* b_hh, const scalar_t* h,
                   scalar_t* h_new, mm_t* h_mm, int64_t batch, int64_t units) {
  const int64_t g = 3 * units;
  at::parallel_for(0, batch, grain(units), [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const scalar_t* gi_b = gi + b * g;
      const scalar_t* gh_b = gh + b * g;
      const scalar_t* h_b = h + b * units;
      scalar_t* out_b = h_new + b * units;
      mm_t* mm_b = h_mm + b * units;
#pragma omp simd
      for (int64_t j = 0; j < units; ++j) {
        const Gates<scalar_t> a = gates_at(gi_b, gh_b, b_hh, units, j);
        const scalar_t value = (scalar_t(1) - a.z) * a.n + a.z * h_b[j];
        out_b[j] = value;
        if constexpr (kMixed<scalar_t, mm_t>) mm_b[j] = narrow_to<mm_t>(value);
      }
    }
  });
}

// Backward gates of one step. The gradient reaching the new state is carried[b, j] (through
// the next step) + grad_out[b, j] (from above); with the recomputed gi, gh (as in
// forward_gates) and the previous state, it gives the gradients of the pre-activations, input
// part dgi and hidden part dgh [B, 3H]; carried is overwritten with the part of the previous
// state's gradient that skips the weights (dh * z), to which the caller adds dgh W_hh.
// grad_out rows are go_stride apart (0: one row of zeros, see OutputGrad).
template <typename scalar_t, typename mm_t>
void backward_gates(scalar_t* carried, const scalar_t* grad_out,
                    int64_t go_stride, const scalar_t* gi, const scalar_t* gh, const scalar_t* b_hh,
                    const scalar_t* h_prev, mm_t* dgi, mm_t* dgh, int64_t batch, int64_t units) {
  const int64_t g = 3 * units;
  at::parallel_for(0, batch, grain(units), [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      scalar_t* carried_b = carried + b * units;
      const scalar_t* go_b = grad_out + b * go_stride;
      const scalar_t* gi_b = gi + b * g;
      const scalar_t* gh_b = gh + b * g;
      const scalar_t* hp_b = h_prev + b * units;
      mm_t* dgi_b = dgi + b * g;
      mm_t* dgh_b = dgh + b * g;
#pragma omp simd
      for (int64_t j = 0; j < units; ++j) {
        const Gates<scalar_t> a = gates_at(gi_b, gh_b, b_hh, units, j);
        const scalar_t r = a.r, z = a.z, hn = a.hn, n = a.n;
        const scalar_t grad = carried_b[j] + go_b[j];
        const scalar_t dn = grad * (scalar_t(1) - z) * (scalar_t(1) - n * n);
        const scalar_t dz = grad * (hp_b[j] - n) * z * (scalar_t(1) - z);
        const scalar_t dr = dn * hn * r * (scalar_t(1) - r);
        dgi_b[j] = narrow_to<mm_t>(dr);
        dgi_b[units + j] = narrow_to<mm_t>(dz);
        dgi_b[2 * units + j] = narrow_to<mm_t>(dn);
        dgh_b[j] = narrow_to<mm_t>(dr);
        dgh_b[units + j] = narrow_to<mm_t>(dz);
        dgh_b[2 * units + j] = narrow_to<mm_t>(dn * r);
        carried_b[j] = grad * z;
      }
    }
  });
}

// The steps of a chunk run on the calling thread alone. A step's work (a [B, H] x [H, 3H] GEMM
// and a gate loop over B x H) takes tens of microseconds: split over threads, every step waits
// at a barrier for all of them, and a thread the scheduler has parked for a busy neighbour
// (a browser, a second run) holds each of those barriers for a whole time slice, so a run
// sharing its cores slowed 3-9x. The chunk GEMMs around the steps (thousands of rows) still use
// every thread: they pay for the barrier.
class OneThread {
 public:
  OneThread() : before_(at::get_num_threads()) {
    if (before_ > 1) at::set_num_threads(1);
  }
  ~OneThread() {
    if (before_ > 1) at::set_num_threads(before_);
  }
  OneThread(const OneThread&) = delete;
  OneThread& operator=(const OneThread&) = delete;

 private:
  int before_;
};

// Steps per chunk: about 4096 rows per chunk GEMM, efficient, and small enough to stay in cache.
int64_t chunk_steps(int64_t batch, int64_t steps) {
  return std::max<int64_t>(1, std::min<int64_t>(steps, 4096 / std::max<int64_t>(batch, 1)));
}

// The gradient reaching a layer's outputs, read a step at a time: grad_out [T, B, H] (rows of
// units contiguous; batch and time strides may be anything: it often arrives as a transposed
// view of a batch-first tensor, and reading it in place saves a copy of the whole sequence), or
// none (an empty tensor: only the final state reaches the loss, as in a classifier), read as one
// row of zeros with strides 0 rather than a [T, B, H] tensor of them that someone must fill.
template <typename scalar_t>
struct OutputGrad {
  at::Tensor rows;
  int64_t time_stride, batch_stride;
  OutputGrad(const at::Tensor& grad_out, int64_t units, const at::TensorOptions& opts) {
    if (grad_out.numel() == 0) {
      rows = at::zeros({units}, opts);
      time_stride = batch_stride = 0;
    } else {
      rows = grad_out.stride(2) == 1 ? grad_out : grad_out.contiguous();
      time_stride = rows.stride(0);
      batch_stride = rows.stride(1);
    }
  }
  const scalar_t* at_step(int64_t t) const { return rows.data_ptr<scalar_t>() + t * time_stride; }
};

// The states before each step of a chunk, [len * B, H]: h0 and out[c0 .. c0 + len - 2].
at::Tensor states_before(const at::Tensor& out, const at::Tensor& h0, int64_t c0, int64_t len) {
  const int64_t batch = out.size(1), units = out.size(2);
  if (c0 > 0) return out.narrow(0, c0 - 1, len).view({len * batch, units});
  return at::cat({h0.unsqueeze(0), out.narrow(0, 0, len - 1)}, 0).view({len * batch, units});
}

// The gates of unit j of one LSTM row, from its pre-activations g [4H] (i, f, g, o blocks,
// without b_hh) and b_hh.
template <typename scalar_t>
struct LstmGates {
  scalar_t i, f, g, o;
};

template <typename scalar_t>
inline LstmGates<scalar_t> lstm_gates_at(const scalar_t* g, const scalar_t* b_hh, int64_t units,
                                         int64_t j) {
  LstmGates<scalar_t> a;
  a.i = sigmoid(g[j] + b_hh[j]);
  a.f = sigmoid(g[units + j] + b_hh[units + j]);
  a.g = std::tanh(g[2 * units + j] + b_hh[2 * units + j]);
  a.o = sigmoid(g[3 * units + j] + b_hh[3 * units + j]);
  return a;
}

// As lstm_gates_at, with the hidden part gh [4H] (W_hh h, mixed) apart from g.
template <typename scalar_t>
inline LstmGates<scalar_t> lstm_gates_at(const scalar_t* g, const scalar_t* gh,
                                         const scalar_t* b_hh, int64_t units, int64_t j) {
  auto pre = [&](int64_t q) { return g[q * units + j] + gh[q * units + j] + b_hh[q * units + j]; };
  return {sigmoid(pre(0)), sigmoid(pre(1)), std::tanh(pre(2)), sigmoid(pre(3))};
}

// The gates of unit j as the forward kept them (activated, i, f, g, o blocks of a [4H] row).
template <typename scalar_t>
inline LstmGates<scalar_t> lstm_kept_gates_at(const scalar_t* g, int64_t units, int64_t j) {
  return {g[j], g[units + j], g[2 * units + j], g[3 * units + j]};
}

// LSTM forward gates of one step: g [B, 4H] holds W_ih x + b_ih + W_hh h (b_hh [4H] is added
// here; mixed: g holds W_ih x + b_ih and gh [B, 4H] W_hh h, added here too);
// from the previous cell state c [B, H] -> the new c_new and h_new [B, H] (mixed: and h_mm,
// the copy of h_new the next GEMM reads). With kKeep, g's rows are overwritten with the
// activated gates, for the backward to read.
template <bool kKeep, typename scalar_t, typename mm_t>
void lstm_forward_gates(scalar_t* g, const scalar_t* gh, const scalar_t* b_hh, const scalar_t* c,
                        scalar_t* c_new, scalar_t* h_new, mm_t* h_mm, int64_t batch,
                        int64_t units) {
  const int64_t width = 4 * units;
  at::parallel_for(0, batch, grain(units), [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      scalar_t* g_b = g + b * width;
      const scalar_t* gh_b = gh + b * width;
      const scalar_t* c_b = c + b * units;
      scalar_t* cn_b = c_new + b * units;
      scalar_t* hn_b = h_new + b * units;
      mm_t* mm_b = h_mm + b * units;
#pragma omp simd
      for (int64_t j = 0; j < units; ++j) {
        LstmGates<scalar_t> a;
        if constexpr (kMixed<scalar_t, mm_t>) {
          a = lstm_gates_at(g_b, gh_b, b_hh, units, j);
        } else {
          a = lstm_gates_at(g_b, b_hh, units, j);
        }
        if constexpr (kKeep) {
          g_b[j] = a.i;
          g_b[units + j] = a.f;
          g_b[2 * units + j] = a.g;
          g_b[3 * units + j] = a.o;
        }
        const scalar_t cell = a.f * c_b[j] + a.i * a.g;
        cn_b[j] = cell;
        const scalar_t value = a.o * std::tanh(cell);
        hn_b[j] = value;
        if constexpr (kMixed<scalar_t, mm_t>) mm_b[j] = narrow_to<mm_t>(value);
      }
    }
  });
}

// LSTM backward gates of one step. dh = carried_h + grad_out reaches h', carried_c reaches c';
// with the gates (kKept: g holds them activated, as the forward kept them; else g holds the
// recomputed pre-activations, as in lstm_forward_gates), the previous and new cell states, it
// gives the gradient of the pre-activations dg [B, 4H] (the same for the input and the hidden
// part: they add). carried_c is overwritten with the previous cell state's gradient; the
// previous h's gradient, dg W_hh, is the caller's.
template <bool kKept, typename scalar_t, typename mm_t>
void lstm_backward_gates(const scalar_t* carried_h, scalar_t* carried_c, const scalar_t* grad_out,
                         int64_t go_stride, const scalar_t* g, const scalar_t* b_hh,
                         const scalar_t* c_prev, const scalar_t* c, mm_t* dg, int64_t batch,
                         int64_t units) {
  const int64_t width = 4 * units;
  at::parallel_for(0, batch, grain(units), [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const scalar_t* ch_b = carried_h + b * units;
      scalar_t* cc_b = carried_c + b * units;
      const scalar_t* go_b = grad_out + b * go_stride;
      const scalar_t* g_b = g + b * width;
      const scalar_t* cp_b = c_prev + b * units;
      const scalar_t* c_b = c + b * units;
      mm_t* dg_b = dg + b * width;
#pragma omp simd
      for (int64_t j = 0; j < units; ++j) {
        const LstmGates<scalar_t> a =
            kKept ? lstm_kept_gates_at(g_b, units, j) : lstm_gates_at(g_b, b_hh, units, j);
        const scalar_t i = a.i, f = a.f, gg = a.g, o = a.o;
        const scalar_t tc = std::tanh(c_b[j]);
        const scalar_t dh = ch_b[j] + go_b[j];
        const scalar_t dc = cc_b[j] + dh * o * (scalar_t(1) - tc * tc);
        dg_b[j] = narrow_to<mm_t>(dc * gg * i * (scalar_t(1) - i));
        dg_b[units + j] = narrow_to<mm_t>(dc * cp_b[j] * f * (scalar_t(1) - f));
        dg_b[2 * units + j] = narrow_to<mm_t>(dc * i * (scalar_t(1) - gg * gg));
        dg_b[3 * units + j] = narrow_to<mm_t>(dh * tc * o * (scalar_t(1) - o));
        cc_b[j] = dc * f;
      }
    }
  });
}

// Forward of one layer: x [T, B, I], h0 [B, H] -> out [T, B, H].
template <typename scalar_t, typename mm_t>
at::Tensor gru_forward_impl(const at::Tensor& x, const at::Tensor& h0, const at::Tensor& w_ih,
                            const at::Tensor& w_hh, const at::Tensor& b_ih,
                            const at::Tensor& b_hh) {
  const int64_t steps = x.size(0), batch = x.size(1), inputs = x.size(2), units = h0.size(1);
  const int64_t chunk = chunk_steps(batch, steps);
  auto x_mm = for_mm<mm_t>(x.contiguous());
  const auto [x_in, w_ih_t] = projection_operands<scalar_t, mm_t>(x, x_mm, w_ih, for_mm<mm_t>(w_ih));
  auto out = at::empty({steps, batch, units}, x.options());
  auto gi = at::empty({chunk, batch, 3 * units}, x.options());
  auto gh = at::empty({batch, 3 * units}, x.options());
  constexpr bool mixed = kMixed<scalar_t, mm_t>;
  const StepWeights w_step = mixed ? StepWeights(w_hh.t()) : StepWeights();
  auto w_hh_t = w_hh.t();
  auto b_hh_c = b_hh.contiguous();
  at::Tensor h = h0.contiguous();
  // The state the step GEMM reads: h itself, or (mixed) its bfloat16 copy, which each step's
  // gate loop overwrites with the new state once the GEMM has read it.
  at::Tensor h_mm = kMixed<scalar_t, mm_t> ? for_mm<mm_t>(h) : h;
  for (int64_t c0 = 0; c0 < steps; c0 += chunk) {
    const int64_t len = std::min(chunk, steps - c0);
    auto gi_rows = gi.narrow(0, 0, len).view({len * batch, 3 * units});
    project_into(gi_rows, b_ih, x_in.narrow(0, c0, len).view({len * batch, inputs}), w_ih_t);
    const OneThread steps_alone;
    for (int64_t t = c0; t < c0 + len; ++t) {
      if constexpr (mixed) {
        w_step.product(gh, h_mm, false);
      } else {
        at::mm_out(gh, h_mm, w_hh_t);
      }
      at::Tensor h_new = out[t];
      forward_gates<scalar_t, mm_t>(gi[t - c0].template data_ptr<scalar_t>(), gh.template data_ptr<scalar_t>(),
                                    b_hh_c.template data_ptr<scalar_t>(), h.template data_ptr<scalar_t>(),
                                    h_new.template data_ptr<scalar_t>(), h_mm.template data_ptr<mm_t>(), batch,
                                    units);
      h = h_new;
      if constexpr (!kMixed<scalar_t, mm_t>) h_mm = h;
    }
  }
  return out;
}

// Backward of one layer. grad_out [T, B, H] reaches every output (empty: none does), grad_h
// [B, H] the final state. Returns {dx [T, B, I], dh0 [B, H], dw_ih, dw_hh, db_ih, db_hh}.
template <typename scalar_t, typename mm_t>
std::vector<at::Tensor> gru_backward_impl(const at::Tensor& grad_out, const at::Tensor& grad_h,
                                          const at::Tensor& x, const at::Tensor& h0,
                                          const at::Tensor& out, const at::Tensor& w_ih,
                                          const at::Tensor& w_hh, const at::Tensor& b_ih,
                                          const at::Tensor& b_hh) {
  const int64_t steps = x.size(0), batch = x.size(1), inputs = x.size(2), units = h0.size(1);
  const int64_t chunk = chunk_steps(batch, steps);
  auto opts = x.options();
  auto x_mm = for_mm<mm_t>(x.contiguous());
  auto mm_opts = x_mm.options();
  auto h0c = h0.contiguous();
  auto w_ih_mm = for_mm<mm_t>(w_ih);
  const auto [x_in, w_ih_t] = projection_operands<scalar_t, mm_t>(x, x_mm, w_ih, w_ih_mm);
  auto gi = at::empty({chunk, batch, 3 * units}, opts);
  auto gh = at::empty({chunk, batch, 3 * units}, opts);
  auto dgi = at::empty({chunk, batch, 3 * units}, mm_opts);
  auto dgh = at::empty({chunk, batch, 3 * units}, mm_opts);
  auto b_hh_c = b_hh.contiguous();
  auto carried = grad_h.contiguous().clone();  // the gradient reaching the state after step t
  constexpr bool mixed = kMixed<scalar_t, mm_t>;
  // Mixed: the products through W_hh (forward, recomputed: W_hh^T; backward: W_hh, added into
  // carried in float32 as the float32 path's addmm_ does).
  const StepWeights w_step = mixed ? StepWeights(w_hh.t()) : StepWeights();
  const StepWeights w_back = mixed ? StepWeights(w_hh) : StepWeights();
  auto dx = at::empty({steps, batch, inputs}, opts);
  auto dw_ih = at::zeros_like(w_ih);
  auto dw_hh = at::zeros_like(w_hh);
  auto db_ih = at::zeros({3 * units}, opts);
  auto db_hh = at::zeros({3 * units}, opts);
  const OutputGrad<scalar_t> grad_rows(grad_out, units, opts);
  const int64_t last_start = ((steps - 1) / chunk) * chunk;
  for (int64_t c0 = last_start; c0 >= 0; c0 -= chunk) {
    const int64_t len = std::min(chunk, steps - c0);
    auto x_rows = x_mm.narrow(0, c0, len).view({len * batch, inputs});
    auto h_prev_rows = states_before(out, h0c, c0, len);
    auto h_prev_mm = kMixed<scalar_t, mm_t> ? for_mm<mm_t>(h_prev_rows) : h_prev_rows;
    // Recompute this chunk's pre-activations: two GEMMs over all its steps.
    auto gi_rows = gi.narrow(0, 0, len).view({len * batch, 3 * units});
    auto gh_rows = gh.narrow(0, 0, len).view({len * batch, 3 * units});
    project_into(gi_rows, b_ih, x_in.narrow(0, c0, len).view({len * batch, inputs}), w_ih_t);
    if constexpr (mixed) {
      w_step.product(gh_rows, h_prev_mm, false);
    } else {
      at::mm_out(gh_rows, h_prev_mm, w_hh.t());
    }
    {
      const OneThread steps_alone;
      for (int64_t t = c0 + len - 1; t >= c0; --t) {
        const int64_t k = t - c0;
        backward_gates<scalar_t, mm_t>(
            carried.template data_ptr<scalar_t>(), grad_rows.at_step(t),
            grad_rows.batch_stride, gi[k].template data_ptr<scalar_t>(), gh[k].template data_ptr<scalar_t>(),
            b_hh_c.template data_ptr<scalar_t>(), h_prev_rows.template data_ptr<scalar_t>() + k * batch * units,
            dgi[k].template data_ptr<mm_t>(), dgh[k].template data_ptr<mm_t>(), batch, units);
        // Through the recurrent weights: carried += dgh [B, 3H] x W_hh [3H, H].
        if constexpr (mixed) {
          w_back.product(carried, dgh[k], true);
        } else {
          carried.addmm_(dgh[k], w_hh);
        }
      }
    }
    // This chunk's share of the weight gradients, and its input gradient.
    auto dgi_rows = dgi.narrow(0, 0, len).view({len * batch, 3 * units});
    auto dgh_rows = dgh.narrow(0, 0, len).view({len * batch, 3 * units});
    addmm_into(dw_hh, dgh_rows.t(), h_prev_mm);
    addmm_into(dw_ih, dgi_rows.t(), x_rows);
    db_hh.add_(at::sum(dgh_rows, {0}, false, opts.dtype().toScalarType()));
    db_ih.add_(at::sum(dgi_rows, {0}, false, opts.dtype().toScalarType()));
    mm_into(dx.narrow(0, c0, len).view({len * batch, inputs}), dgi_rows, w_ih_mm);
  }
  return {dx, carried, dw_ih, dw_hh, db_ih, db_hh};
}

// LSTM forward of one layer: x [T, B, I], h0 and c0 [B, H] -> {out [T, B, H], cells [T, B, H],
// gates}. With keep_gates, gates [T, B, 4H] holds every step's activated gates (i, f, g, o) for
// the backward, which then skips recomputing them; else it is empty.
template <typename scalar_t, typename mm_t>
std::vector<at::Tensor> lstm_forward_impl(const at::Tensor& x, const at::Tensor& h0,
                                          const at::Tensor& c0, const at::Tensor& w_ih,
                                          const at::Tensor& w_hh, const at::Tensor& b_ih,
                                          const at::Tensor& b_hh, bool keep_gates) {
  const int64_t steps = x.size(0), batch = x.size(1), inputs = x.size(2), units = h0.size(1);
  const int64_t chunk = chunk_steps(batch, steps);
  auto x_mm = for_mm<mm_t>(x.contiguous());
  auto out = at::empty({steps, batch, units}, x.options());
  auto cells = at::empty({steps, batch, units}, x.options());
  // Kept: one buffer for all steps; else one chunk's, reused.
  auto g = at::empty({keep_gates ? steps : chunk, batch, 4 * units}, x.options());
  // Mixed: the step's W_hh h, apart (else it is added into g in place).
  constexpr bool mixed = kMixed<scalar_t, mm_t>;
  auto gh = at::empty({mixed ? batch : 0, 4 * units}, x.options());
  const auto [x_in, w_ih_t] = projection_operands<scalar_t, mm_t>(x, x_mm, w_ih, for_mm<mm_t>(w_ih));
  const StepWeights w_step = mixed ? StepWeights(w_hh.t()) : StepWeights();
  auto w_hh_t = w_hh.t();
  auto b_hh_c = b_hh.contiguous();
  at::Tensor h = h0.contiguous();
  at::Tensor c = c0.contiguous();
  at::Tensor h_mm = kMixed<scalar_t, mm_t> ? for_mm<mm_t>(h) : h;  // as in gru_forward_impl
  auto step = keep_gates ? lstm_forward_gates<true, scalar_t, mm_t>
                         : lstm_forward_gates<false, scalar_t, mm_t>;
  for (int64_t s0 = 0; s0 < steps; s0 += chunk) {
    const int64_t len = std::min(chunk, steps - s0);
    const int64_t first = keep_gates ? s0 : 0;  // the chunk's first row of g
    auto g_rows = g.narrow(0, first, len).view({len * batch, 4 * units});
    project_into(g_rows, b_ih, x_in.narrow(0, s0, len).view({len * batch, inputs}), w_ih_t);
    const OneThread steps_alone;
    for (int64_t t = s0; t < s0 + len; ++t) {
      at::Tensor g_t = g[first + t - s0];
      if constexpr (mixed) {
        w_step.product(gh, h_mm, false);
      } else {
        g_t.addmm_(h, w_hh_t);  // the input part is not needed again: add in place
      }
      at::Tensor h_new = out[t], c_new = cells[t];
      step(g_t.template data_ptr<scalar_t>(), gh.template data_ptr<scalar_t>(), b_hh_c.template data_ptr<scalar_t>(),
           c.template data_ptr<scalar_t>(), c_new.template data_ptr<scalar_t>(), h_new.template data_ptr<scalar_t>(),
           h_mm.template data_ptr<mm_t>(), batch, units);
      h = h_new;
      c = c_new;
      if constexpr (!kMixed<scalar_t, mm_t>) h_mm = h;
    }
  }
  return {out, cells, keep_gates ? g : at::empty({0}, x.options())};
}

// LSTM backward of one layer. grad_out [T, B, H] reaches every output (empty: none does),
// grad_h and grad_c [B, H] the final state; gates: lstm_forward's (empty: recompute them).
// Returns {dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh}.
template <typename scalar_t, typename mm_t>
std::vector<at::Tensor> lstm_backward_impl(const at::Tensor& grad_out, const at::Tensor& grad_h,
                                           const at::Tensor& grad_c, const at::Tensor& x,
                                           const at::Tensor& h0, const at::Tensor& c0,
                                           const at::Tensor& out, const at::Tensor& cells,
                                           const at::Tensor& gates, const at::Tensor& w_ih,
                                           const at::Tensor& w_hh, const at::Tensor& b_ih,
                                           const at::Tensor& b_hh) {
  const int64_t steps = x.size(0), batch = x.size(1), inputs = x.size(2), units = h0.size(1);
  const int64_t chunk = chunk_steps(batch, steps);
  auto opts = x.options();
  auto x_mm = for_mm<mm_t>(x.contiguous());
  auto mm_opts = x_mm.options();
  auto h0c = h0.contiguous();
  auto c0c = c0.contiguous();
  auto w_ih_mm = for_mm<mm_t>(w_ih);
  const auto [x_in, w_ih_t] = projection_operands<scalar_t, mm_t>(x, x_mm, w_ih, w_ih_mm);
  const bool kept = gates.numel() > 0;
  TORCH_CHECK(!kept || (gates.is_contiguous() && gates.size(0) == steps),
              "lstm_backward: gates must be lstm_forward's [T, B, 4H]");
  auto g = at::empty({kept ? 0 : chunk, batch, 4 * units}, opts);
  auto dg = at::empty({chunk, batch, 4 * units}, mm_opts);
  auto b_hh_c = b_hh.contiguous();
  // The gradient reaching h after step t (the output of the step's product through W_hh).
  auto carried_h = grad_h.contiguous().clone();
  constexpr bool mixed = kMixed<scalar_t, mm_t>;
  // Mixed: the products through W_hh (recomputed: W_hh^T; backward: W_hh).
  const StepWeights w_step = mixed && !kept ? StepWeights(w_hh.t()) : StepWeights();
  const StepWeights w_back = mixed ? StepWeights(w_hh) : StepWeights();
  auto carried_c = grad_c.contiguous().clone();
  auto dx = at::empty({steps, batch, inputs}, opts);
  auto dw_ih = at::zeros_like(w_ih);
  auto dw_hh = at::zeros_like(w_hh);
  auto db = at::zeros({4 * units}, opts);
  const OutputGrad<scalar_t> grad_rows(grad_out, units, opts);
  auto step = kept ? lstm_backward_gates<true, scalar_t, mm_t>
                   : lstm_backward_gates<false, scalar_t, mm_t>;
  const int64_t last_start = ((steps - 1) / chunk) * chunk;
  for (int64_t s0 = last_start; s0 >= 0; s0 -= chunk) {
    const int64_t len = std::min(chunk, steps - s0);
    auto x_rows = x_mm.narrow(0, s0, len).view({len * batch, inputs});
    auto h_prev_rows = states_before(out, h0c, s0, len);
    auto h_prev_mm = kMixed<scalar_t, mm_t> ? for_mm<mm_t>(h_prev_rows) : h_prev_rows;
    auto c_prev_rows = states_before(cells, c0c, s0, len);
    at::Tensor g_chunk;
    if (kept) {
      g_chunk = gates.narrow(0, s0, len);
    } else {  // recompute this chunk's pre-activations (without b_hh): two GEMMs
      g_chunk = g.narrow(0, 0, len);
      auto g_rows = g_chunk.view({len * batch, 4 * units});
      project_into(g_rows, b_ih, x_in.narrow(0, s0, len).view({len * batch, inputs}), w_ih_t);
      if constexpr (mixed) {
        w_step.product(g_rows, h_prev_mm, true);
      } else {
        g_rows.addmm_(h_prev_mm, w_hh.t());
      }
    }
    {
      const OneThread steps_alone;
      for (int64_t t = s0 + len - 1; t >= s0; --t) {
        const int64_t k = t - s0;
        step(carried_h.template data_ptr<scalar_t>(), carried_c.template data_ptr<scalar_t>(), grad_rows.at_step(t),
             grad_rows.batch_stride, g_chunk[k].template data_ptr<scalar_t>(),
             b_hh_c.template data_ptr<scalar_t>(), c_prev_rows.template data_ptr<scalar_t>() + k * batch * units,
             cells[t].template data_ptr<scalar_t>(), dg[k].template data_ptr<mm_t>(), batch, units);
        // The previous h reaches the loss only through the recurrent weights.
        if constexpr (mixed) {
          w_back.product(carried_h, dg[k], false);
        } else {
          at::mm_out(carried_h, dg[k], w_hh);
        }
      }
    }
    auto dg_rows = dg.narrow(0, 0, len).view({len * batch, 4 * units});
    addmm_into(dw_hh, dg_rows.t(), h_prev_mm);
    addmm_into(dw_ih, dg_rows.t(), x_rows);
    db.add_(at::sum(dg_rows, {0}, false, opts.dtype().toScalarType()));
    mm_into(dx.narrow(0, s0, len).view({len * batch, inputs}), dg_rows, w_ih_mm);
  }
  return {dx, carried_h, carried_c, dw_ih, dw_hh, db, db.clone()};
}

}  // namespace

// The exported kernels: float32 or float64 throughout, or (bf16, float32 tensors) the GEMMs in
// bfloat16, as the header says.
#define SEQRNN_DISPATCH(x, bf16, name, ...)                                                     \
  [&] {                                                                                         \
    if (bf16) {                                                                                 \
      TORCH_CHECK((x).scalar_type() == at::kFloat, name                                         \
                  ": bf16 GEMMs need float32 tensors, got ", (x).scalar_type());                \
      return __VA_ARGS__<float, at::BFloat16>;                                                  \
    }                                                                                           \
    TORCH_CHECK((x).scalar_type() == at::kFloat || (x).scalar_type() == at::kDouble, name       \
                ": expected float32 or float64 tensors, got ", (x).scalar_type());              \
    return (x).scalar_type() == at::kDouble ? __VA_ARGS__<double, double>                      \
                                            : __VA_ARGS__<float, float>;                        \
  }()

at::Tensor gru_forward(const at::Tensor& x, const at::Tensor& h0, const at::Tensor& w_ih,
                       const at::Tensor& w_hh, const at::Tensor& b_ih, const at::Tensor& b_hh,
                       bool bf16) {
  TORCH_CHECK(x.dim() == 3 && h0.dim() == 2, "expected x [T, B, I] and h0 [B, H]");
  return SEQRNN_DISPATCH(x, bf16, "gru_forward", gru_forward_impl)(x, h0, w_ih, w_hh, b_ih, b_hh);
}

std::vector<at::Tensor> gru_backward(const at::Tensor& grad_out, const at::Tensor& grad_h,
                                     const at::Tensor& x, const at::Tensor& h0,
                                     const at::Tensor& out, const at::Tensor& w_ih,
                                     const at::Tensor& w_hh, const at::Tensor& b_ih,
                                     const at::Tensor& b_hh, bool bf16) {
  return SEQRNN_DISPATCH(x, bf16, "gru_backward", gru_backward_impl)(
      grad_out, grad_h, x, h0, out, w_ih, w_hh, b_ih, b_hh);
}

std::vector<at::Tensor> lstm_forward(const at::Tensor& x, const at::Tensor& h0,
                                     const at::Tensor& c0, const at::Tensor& w_ih,
                                     const at::Tensor& w_hh, const at::Tensor& b_ih,
                                     const at::Tensor& b_hh, bool keep_gates, bool bf16) {
  TORCH_CHECK(x.dim() == 3 && h0.dim() == 2 && c0.dim() == 2,
              "expected x [T, B, I], h0 and c0 [B, H]");
  return SEQRNN_DISPATCH(x, bf16, "lstm_forward", lstm_forward_impl)(
      x, h0, c0, w_ih, w_hh, b_ih, b_hh, keep_gates);
}

std::vector<at::Tensor> lstm_backward(const at::Tensor& grad_out, const at::Tensor& grad_h,
                                      const at::Tensor& grad_c, const at::Tensor& x,
                                      const at::Tensor& h0, const at::Tensor& c0,
                                      const at::Tensor& out, const at::Tensor& cells,
                                      const at::Tensor& gates, const at::Tensor& w_ih,
                                      const at::Tensor& w_hh, const at::Tensor& b_ih,
                                      const at::Tensor& b_hh, bool bf16) {
  return SEQRNN_DISPATCH(x, bf16, "lstm_backward", lstm_backward_impl)(
      grad_out, grad_h, grad_c, x, h0, c0, out, cells, gates, w_ih, w_hh, b_ih, b_hh);
}

// Whether this build of PyTorch runs the bfloat16 step products (oneDNN's brgemm micro-kernel,
// built into x86 PyTorch for CPUs with AVX-512 bfloat16 or AMX): a product of ones, checked.
bool bf16_step_products() {
  try {
    const auto ones = at::ones({4, 4}, at::kFloat);
    const StepWeights w(ones);
    auto out = at::zeros({4, 4}, at::kFloat);
    w.product(out, ones.to(at::kBFloat16), false);
    return out.eq(4).all().item<bool>();
  } catch (const c10::Error&) {
    return false;
  }
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("bf16_step_products", &bf16_step_products,
        "whether the bfloat16 step products run here (brgemm)");
  m.def("gru_forward", &gru_forward, "GRU layer forward through time (CPU)");
  m.def("gru_backward", &gru_backward, "GRU layer backward through time (CPU)");
  m.def("lstm_forward", &lstm_forward, "LSTM layer forward through time (CPU)");
  m.def("lstm_backward", &lstm_backward, "LSTM layer backward through time (CPU)");
}
