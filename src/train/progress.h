// The progress line: step, samples/s, loss, ETA. On a terminal it rewrites one line in place about
// four times a second; otherwise (a log file, CI) it prints a plain line every `plain_every` steps.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>

namespace rf {

class ProgressLine {
 public:
  // out == nullptr: a silent progress line (ranks other than 0).
  ProgressLine(FILE* out, int64_t total_steps, int64_t plain_every);
  // Called after every step with the samples it trained and its loss.
  void update(int64_t step, int64_t samples, double loss);
  // Ends an in-place line so that later output starts on a fresh line.
  void finish();
  // Ends the in-place line before another message is printed, without ending the progress.
  void interrupt();

 private:
  void print(int64_t step, bool in_place);

  FILE* out_;
  bool tty_;
  int64_t total_steps_;
  int64_t plain_every_;
  std::chrono::steady_clock::time_point start_, last_print_;
  int64_t samples_ = 0;
  double loss_ema_ = 0;
  bool have_loss_ = false;
  bool line_open_ = false;
};

}  // namespace rf
