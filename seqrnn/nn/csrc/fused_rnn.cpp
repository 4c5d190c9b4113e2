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

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

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
// h [B, H] -> the new state h_new [B, H].
template <typename scalar_t>
void forward_gates(const scalar_t* gi, const scalar_t* gh, const scalar_t* b_hh, const scalar_t* h,
                   scalar_t* h_new, int64_t batch, int64_t units) {
  const int64_t g = 3 * units;
  at::parallel_for(0, batch, grain(units), [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const scalar_t* gi_b = gi + b * g;
      const scalar_t* gh_b = gh + b * g;
      const scalar_t* h_b = h + b * units;
      scalar_t* out_b = h_new + b * units;
#pragma omp simd
      for (int64_t j = 0; j < units; ++j) {
        const Gates<scalar_t> a = gates_at(gi_b, gh_b, b_hh, units, j);
        out_b[j] = (scalar_t(1) - a.z) * a.n + a.z * h_b[j];
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
template <typename scalar_t>
void backward_gates(scalar_t* carried, const scalar_t* grad_out, int64_t go_stride,
                    const scalar_t* gi, const scalar_t* gh, const scalar_t* b_hh,
                    const scalar_t* h_prev, scalar_t* dgi, scalar_t* dgh, int64_t batch,
                    int64_t units) {
  const int64_t g = 3 * units;
  at::parallel_for(0, batch, grain(units), [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      scalar_t* carried_b = carried + b * units;
      const scalar_t* go_b = grad_out + b * go_stride;
      const scalar_t* gi_b = gi + b * g;
      const scalar_t* gh_b = gh + b * g;
      const scalar_t* hp_b = h_prev + b * units;
      scalar_t* dgi_b = dgi + b * g;
      scalar_t* dgh_b = dgh + b * g;
#pragma omp simd
      for (int64_t j = 0; j < units; ++j) {
        const Gates<scalar_t> a = gates_at(gi_b, gh_b, b_hh, units, j);
        const scalar_t r = a.r, z = a.z, hn = a.hn, n = a.n;
        const scalar_t grad = carried_b[j] + go_b[j];
        const scalar_t dn = grad * (scalar_t(1) - z) * (scalar_t(1) - n * n);
        const scalar_t dz = grad * (hp_b[j] - n) * z * (scalar_t(1) - z);
        const scalar_t dr = dn * hn * r * (scalar_t(1) - r);
        dgi_b[j] = dr;
        dgi_b[units + j] = dz;
        dgi_b[2 * units + j] = dn;
        dgh_b[j] = dr;
        dgh_b[units + j] = dz;
        dgh_b[2 * units + j] = dn * r;
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

// The gates of unit j as the forward kept them (activated, i, f, g, o blocks of a [4H] row).
template <typename scalar_t>
inline LstmGates<scalar_t> lstm_kept_gates_at(const scalar_t* g, int64_t units, int64_t j) {
  return {g[j], g[units + j], g[2 * units + j], g[3 * units + j]};
}

// LSTM forward gates of one step: g [B, 4H] holds W_ih x + b_ih + W_hh h (b_hh [4H] is added
// here); from the previous cell state c [B, H] -> the new c_new and h_new [B, H]. With kKeep,
// g's rows are overwritten with the activated gates, for the backward to read.
template <bool kKeep, typename scalar_t>
void lstm_forward_gates(scalar_t* g, const scalar_t* b_hh, const scalar_t* c, scalar_t* c_new,
                        scalar_t* h_new, int64_t batch, int64_t units) {
  const int64_t width = 4 * units;
  at::parallel_for(0, batch, grain(units), [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      scalar_t* g_b = g + b * width;
      const scalar_t* c_b = c + b * units;
      scalar_t* cn_b = c_new + b * units;
      scalar_t* hn_b = h_new + b * units;
#pragma omp simd
      for (int64_t j = 0; j < units; ++j) {
        const LstmGates<scalar_t> a = lstm_gates_at(g_b, b_hh, units, j);
        if constexpr (kKeep) {
          g_b[j] = a.i;
          g_b[units + j] = a.f;
          g_b[2 * units + j] = a.g;
          g_b[3 * units + j] = a.o;
        }
        const scalar_t cell = a.f * c_b[j] + a.i * a.g;
        cn_b[j] = cell;
        hn_b[j] = a.o * std::tanh(cell);
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
template <bool kKept, typename scalar_t>
void lstm_backward_gates(const scalar_t* carried_h, scalar_t* carried_c, const scalar_t* grad_out,
                         int64_t go_stride, const scalar_t* g, const scalar_t* b_hh,
                         const scalar_t* c_prev, const scalar_t* c, scalar_t* dg, int64_t batch,
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
      scalar_t* dg_b = dg + b * width;
#pragma omp simd
      for (int64_t j = 0; j < units; ++j) {
        const LstmGates<scalar_t> a =
            kKept ? lstm_kept_gates_at(g_b, units, j) : lstm_gates_at(g_b, b_hh, units, j);
        const scalar_t i = a.i, f = a.f, gg = a.g, o = a.o;
        const scalar_t tc = std::tanh(c_b[j]);
        const scalar_t dh = ch_b[j] + go_b[j];
        const scalar_t dc = cc_b[j] + dh * o * (scalar_t(1) - tc * tc);
        dg_b[j] = dc * gg * i * (scalar_t(1) - i);
        dg_b[units + j] = dc * cp_b[j] * f * (scalar_t(1) - f);
        dg_b[2 * units + j] = dc * i * (scalar_t(1) - gg * gg);
        dg_b[3 * units + j] = dh * tc * o * (scalar_t(1) - o);
        cc_b[j] = dc * f;
      }
    }
  });
}

}  // namespace

// Forward of one layer: x [T, B, I], h0 [B, H] -> out [T, B, H].
at::Tensor gru_forward(const at::Tensor& x, const at::Tensor& h0, const at::Tensor& w_ih,
                       const at::Tensor& w_hh, const at::Tensor& b_ih, const at::Tensor& b_hh) {
  TORCH_CHECK(x.dim() == 3 && h0.dim() == 2, "expected x [T, B, I] and h0 [B, H]");
  const int64_t steps = x.size(0), batch = x.size(1), inputs = x.size(2), units = h0.size(1);
  const int64_t chunk = chunk_steps(batch, steps);
  auto xc = x.contiguous();
  auto out = at::empty({steps, batch, units}, x.options());
  auto gi = at::empty({chunk, batch, 3 * units}, x.options());
  auto gh = at::empty({batch, 3 * units}, x.options());
  auto w_ih_t = w_ih.t();
  auto w_hh_t = w_hh.t();
  auto b_hh_c = b_hh.contiguous();
  at::Tensor h = h0.contiguous();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gru_forward", [&] {
    for (int64_t c0 = 0; c0 < steps; c0 += chunk) {
      const int64_t len = std::min(chunk, steps - c0);
      auto gi_rows = gi.narrow(0, 0, len).view({len * batch, 3 * units});
      at::addmm_out(gi_rows, b_ih, xc.narrow(0, c0, len).view({len * batch, inputs}), w_ih_t);
      const OneThread steps_alone;
      for (int64_t t = c0; t < c0 + len; ++t) {
        at::mm_out(gh, h, w_hh_t);
        at::Tensor h_new = out[t];
        forward_gates<scalar_t>(gi[t - c0].data_ptr<scalar_t>(), gh.data_ptr<scalar_t>(),
                                b_hh_c.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(),
                                h_new.data_ptr<scalar_t>(), batch, units);
        h = h_new;
      }
    }
  });
  return out;
}

// Backward of one layer. grad_out [T, B, H] reaches every output (empty: none does), grad_h
// [B, H] the final state. Returns {dx [T, B, I], dh0 [B, H], dw_ih, dw_hh, db_ih, db_hh}.
std::vector<at::Tensor> gru_backward(const at::Tensor& grad_out, const at::Tensor& grad_h,
                                     const at::Tensor& x, const at::Tensor& h0,
                                     const at::Tensor& out, const at::Tensor& w_ih,
                                     const at::Tensor& w_hh, const at::Tensor& b_ih,
                                     const at::Tensor& b_hh) {
  const int64_t steps = x.size(0), batch = x.size(1), inputs = x.size(2), units = h0.size(1);
  const int64_t chunk = chunk_steps(batch, steps);
  auto opts = x.options();
  auto xc = x.contiguous();
  auto h0c = h0.contiguous();
  auto gi = at::empty({chunk, batch, 3 * units}, opts);
  auto gh = at::empty({chunk, batch, 3 * units}, opts);
  auto dgi = at::empty({chunk, batch, 3 * units}, opts);
  auto dgh = at::empty({chunk, batch, 3 * units}, opts);
  auto b_hh_c = b_hh.contiguous();
  auto carried = grad_h.contiguous().clone();  // the gradient reaching the state after step t
  auto dx = at::empty({steps, batch, inputs}, opts);
  auto dw_ih = at::zeros_like(w_ih);
  auto dw_hh = at::zeros_like(w_hh);
  auto db_ih = at::zeros({3 * units}, opts);
  auto db_hh = at::zeros({3 * units}, opts);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gru_backward", [&] {
    const OutputGrad<scalar_t> grad_rows(grad_out, units, opts);
    const int64_t last_start = ((steps - 1) / chunk) * chunk;
    for (int64_t c0 = last_start; c0 >= 0; c0 -= chunk) {
      const int64_t len = std::min(chunk, steps - c0);
      auto x_rows = xc.narrow(0, c0, len).view({len * batch, inputs});
      auto h_prev_rows = states_before(out, h0c, c0, len);
      // Recompute this chunk's pre-activations: two GEMMs over all its steps.
      auto gi_rows = gi.narrow(0, 0, len).view({len * batch, 3 * units});
      auto gh_rows = gh.narrow(0, 0, len).view({len * batch, 3 * units});
      at::addmm_out(gi_rows, b_ih, x_rows, w_ih.t());
      at::mm_out(gh_rows, h_prev_rows, w_hh.t());
      {
        const OneThread steps_alone;
        for (int64_t t = c0 + len - 1; t >= c0; --t) {
          const int64_t k = t - c0;
          backward_gates<scalar_t>(
              carried.data_ptr<scalar_t>(), grad_rows.at_step(t), grad_rows.batch_stride,
              gi[k].data_ptr<scalar_t>(), gh[k].data_ptr<scalar_t>(), b_hh_c.data_ptr<scalar_t>(),
              h_prev_rows.data_ptr<scalar_t>() + k * batch * units, dgi[k].data_ptr<scalar_t>(),
              dgh[k].data_ptr<scalar_t>(), batch, units);
          // Through the recurrent weights: carried += dgh [B, 3H] x W_hh [3H, H].
          carried.addmm_(dgh[k], w_hh);
        }
      }
      // This chunk's share of the weight gradients, and its input gradient.
      auto dgi_rows = dgi.narrow(0, 0, len).view({len * batch, 3 * units});
      auto dgh_rows = dgh.narrow(0, 0, len).view({len * batch, 3 * units});
      dw_hh.addmm_(dgh_rows.t(), h_prev_rows);
      dw_ih.addmm_(dgi_rows.t(), x_rows);
      db_hh.add_(dgh_rows.sum(0));
      db_ih.add_(dgi_rows.sum(0));
      auto dx_rows = dx.narrow(0, c0, len).view({len * batch, inputs});
      at::mm_out(dx_rows, dgi_rows, w_ih);
    }
  });
  return {dx, carried, dw_ih, dw_hh, db_ih, db_hh};
}

// LSTM forward of one layer: x [T, B, I], h0 and c0 [B, H] -> {out [T, B, H], cells [T, B, H],
// gates}. With keep_gates, gates [T, B, 4H] holds every step's activated gates (i, f, g, o) for
// the backward, which then skips recomputing them; else it is empty.
std::vector<at::Tensor> lstm_forward(const at::Tensor& x, const at::Tensor& h0,
                                     const at::Tensor& c0, const at::Tensor& w_ih,
                                     const at::Tensor& w_hh, const at::Tensor& b_ih,
                                     const at::Tensor& b_hh, bool keep_gates) {
  TORCH_CHECK(x.dim() == 3 && h0.dim() == 2 && c0.dim() == 2,
              "expected x [T, B, I], h0 and c0 [B, H]");
  const int64_t steps = x.size(0), batch = x.size(1), inputs = x.size(2), units = h0.size(1);
  const int64_t chunk = chunk_steps(batch, steps);
  auto xc = x.contiguous();
  auto out = at::empty({steps, batch, units}, x.options());
  auto cells = at::empty({steps, batch, units}, x.options());
  // Kept: one buffer for all steps; else one chunk's, reused.
  auto g = at::empty({keep_gates ? steps : chunk, batch, 4 * units}, x.options());
  auto w_hh_t = w_hh.t();
  auto b_hh_c = b_hh.contiguous();
  at::Tensor h = h0.contiguous();
  at::Tensor c = c0.contiguous();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_forward", [&] {
    auto step =
        keep_gates ? lstm_forward_gates<true, scalar_t> : lstm_forward_gates<false, scalar_t>;
    for (int64_t s0 = 0; s0 < steps; s0 += chunk) {
      const int64_t len = std::min(chunk, steps - s0);
      const int64_t first = keep_gates ? s0 : 0;  // the chunk's first row of g
      auto g_rows = g.narrow(0, first, len).view({len * batch, 4 * units});
      at::addmm_out(g_rows, b_ih, xc.narrow(0, s0, len).view({len * batch, inputs}), w_ih.t());
      const OneThread steps_alone;
      for (int64_t t = s0; t < s0 + len; ++t) {
        at::Tensor g_t = g[first + t - s0];
        g_t.addmm_(h, w_hh_t);  // the input part is not needed again: add in place
        at::Tensor h_new = out[t], c_new = cells[t];
        step(g_t.data_ptr<scalar_t>(), b_hh_c.data_ptr<scalar_t>(), c.data_ptr<scalar_t>(),
             c_new.data_ptr<scalar_t>(), h_new.data_ptr<scalar_t>(), batch, units);
        h = h_new;
        c = c_new;
      }
    }
  });
  return {out, cells, keep_gates ? g : at::empty({0}, x.options())};
}

// LSTM backward of one layer. grad_out [T, B, H] reaches every output (empty: none does),
// grad_h and grad_c [B, H] the final state; gates: lstm_forward's (empty: recompute them).
// Returns {dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh}.
std::vector<at::Tensor> lstm_backward(const at::Tensor& grad_out, const at::Tensor& grad_h,
                                      const at::Tensor& grad_c, const at::Tensor& x,
                                      const at::Tensor& h0, const at::Tensor& c0,
                                      const at::Tensor& out, const at::Tensor& cells,
                                      const at::Tensor& gates, const at::Tensor& w_ih,
                                      const at::Tensor& w_hh, const at::Tensor& b_ih,
                                      const at::Tensor& b_hh) {
  const int64_t steps = x.size(0), batch = x.size(1), inputs = x.size(2), units = h0.size(1);
  const int64_t chunk = chunk_steps(batch, steps);
  auto opts = x.options();
  auto xc = x.contiguous();
  auto h0c = h0.contiguous();
  auto c0c = c0.contiguous();
  const bool kept = gates.numel() > 0;
  TORCH_CHECK(!kept || (gates.is_contiguous() && gates.size(0) == steps),
              "lstm_backward: gates must be lstm_forward's [T, B, 4H]");
  auto g = at::empty({kept ? 0 : chunk, batch, 4 * units}, opts);
  auto dg = at::empty({chunk, batch, 4 * units}, opts);
  auto b_hh_c = b_hh.contiguous();
  auto carried_h = grad_h.contiguous().clone();
  auto carried_c = grad_c.contiguous().clone();
  auto dx = at::empty({steps, batch, inputs}, opts);
  auto dw_ih = at::zeros_like(w_ih);
  auto dw_hh = at::zeros_like(w_hh);
  auto db = at::zeros({4 * units}, opts);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_backward", [&] {
    const OutputGrad<scalar_t> grad_rows(grad_out, units, opts);
    auto step = kept ? lstm_backward_gates<true, scalar_t> : lstm_backward_gates<false, scalar_t>;
    const int64_t last_start = ((steps - 1) / chunk) * chunk;
    for (int64_t s0 = last_start; s0 >= 0; s0 -= chunk) {
      const int64_t len = std::min(chunk, steps - s0);
      auto x_rows = xc.narrow(0, s0, len).view({len * batch, inputs});
      auto h_prev_rows = states_before(out, h0c, s0, len);
      auto c_prev_rows = states_before(cells, c0c, s0, len);
      at::Tensor g_chunk;
      if (kept) {
        g_chunk = gates.narrow(0, s0, len);
      } else {  // recompute this chunk's pre-activations (without b_hh): two GEMMs
        g_chunk = g.narrow(0, 0, len);
        auto g_rows = g_chunk.view({len * batch, 4 * units});
        at::addmm_out(g_rows, b_ih, x_rows, w_ih.t());
        g_rows.addmm_(h_prev_rows, w_hh.t());
      }
      {
        const OneThread steps_alone;
        for (int64_t t = s0 + len - 1; t >= s0; --t) {
          const int64_t k = t - s0;
          step(
              carried_h.data_ptr<scalar_t>(), carried_c.data_ptr<scalar_t>(),
              grad_rows.at_step(t), grad_rows.batch_stride, g_chunk[k].data_ptr<scalar_t>(),
              b_hh_c.data_ptr<scalar_t>(), c_prev_rows.data_ptr<scalar_t>() + k * batch * units,
              cells[t].data_ptr<scalar_t>(), dg[k].data_ptr<scalar_t>(), batch, units);
          // The previous h reaches the loss only through the recurrent weights.
          at::mm_out(carried_h, dg[k], w_hh);
        }
      }
      auto dg_rows = dg.narrow(0, 0, len).view({len * batch, 4 * units});
      dw_hh.addmm_(dg_rows.t(), h_prev_rows);
      dw_ih.addmm_(dg_rows.t(), x_rows);
      db.add_(dg_rows.sum(0));
      auto dx_rows = dx.narrow(0, s0, len).view({len * batch, inputs});
      at::mm_out(dx_rows, dg_rows, w_ih);
    }
  });
  return {dx, carried_h, carried_c, dw_ih, dw_hh, db, db.clone()};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("gru_forward", &gru_forward, "GRU layer forward through time (CPU)");
  m.def("gru_backward", &gru_backward, "GRU layer backward through time (CPU)");
  m.def("lstm_forward", &lstm_forward, "LSTM layer forward through time (CPU)");
  m.def("lstm_backward", &lstm_backward, "LSTM layer backward through time (CPU)");
}
