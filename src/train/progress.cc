// ProgressLine (see progress.h).
#include "src/train/progress.h"

#include <unistd.h>

#include <cmath>

namespace rf {

ProgressLine::ProgressLine(FILE* out, int64_t total_steps, int64_t plain_every)
    : out_(out),
      tty_(out != nullptr && isatty(fileno(out)) != 0),
      total_steps_(total_steps),
      plain_every_(plain_every > 0 ? plain_every : 100),
      start_(std::chrono::steady_clock::now()),
      last_print_(start_) {}

void ProgressLine::update(int64_t step, int64_t samples, double loss) {
  if (!out_) return;
  samples_ += samples;
  // Smooth the loss so the line reads as a trend, not as the noise of one batch.
  loss_ema_ = have_loss_ ? 0.95 * loss_ema_ + 0.05 * loss : loss;
  have_loss_ = true;
  auto now = std::chrono::steady_clock::now();
  if (tty_) {
    if (now - last_print_ >= std::chrono::milliseconds(250) || step == total_steps_) {
      print(step, true);
      last_print_ = now;
    }
  } else if (step % plain_every_ == 0 || step == total_steps_) {
    print(step, false);
  }
}

void ProgressLine::print(int64_t step, bool in_place) {
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double rate = elapsed > 0 ? static_cast<double>(samples_) / elapsed : 0.0;
  char eta[32] = "?";
  if (total_steps_ > 0 && step > 0) {
    double left = elapsed / static_cast<double>(step) * static_cast<double>(total_steps_ - step);
    std::snprintf(eta, sizeof eta, "%.0fs", std::max(0.0, left));
  }
  char total[32] = "";
  if (total_steps_ > 0) std::snprintf(total, sizeof total, "/%lld", static_cast<long long>(total_steps_));
  std::fprintf(out_, "%sstep %lld%s | %.0f samples/s | loss %.5f | ETA %s%s", in_place ? "\r" : "",
               static_cast<long long>(step), total, rate, loss_ema_, eta, in_place ? "   " : "\n");
  std::fflush(out_);
  line_open_ = in_place;
}

void ProgressLine::interrupt() {
  if (out_ && line_open_) {
    std::fputc('\n', out_);
    line_open_ = false;
  }
}

void ProgressLine::finish() { interrupt(); }

}  // namespace rf
