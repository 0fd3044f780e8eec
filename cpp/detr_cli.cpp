// detr_cli: run an exported DETR artefact on one image file and print the detections as JSON.
//
//   detr_cli MODEL IMAGE [--threshold T] [--threads N] [--no-optimize] [--require-sidecar]
//            [--repeat R] [--warmup W]
//
// Uses the same core as the Python module (detr_core), OpenCV only to decode the image.
// Exit status: 0 ok, 1 error (message on stderr), 2 bad arguments.

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "detr_core.h"
#include "mini_json.h"

namespace {

constexpr const char* kUsage =
    "usage: detr_cli MODEL IMAGE [--threshold T] [--threads N] [--no-optimize] [--require-sidecar]\n"
    "                [--repeat R] [--warmup W]\n"
    "  MODEL          artefact (.pt) exported by python -m detr_deploy.export, or an AOTInductor\n"
    "                 package (.pt2) from python -m detr_deploy.export --format aoti\n"
    "  IMAGE          image file (any format OpenCV reads; alpha is dropped, greyscale expanded)\n"
    "  --threshold T  score threshold in [0, 1) (default: the artefact's)\n"
    "  --threads N    torch intra-op threads, 1..4 x the CPUs (default: torch's)\n"
    "  --no-optimize  run the saved graph as is (no freeze/optimize_for_inference)\n"
    "  --require-sidecar  refuse a MODEL without a sidecar (MODEL with .json) recording its sha256\n"
    "  --repeat R     run R times and report the median time and every run's time (default 1)\n"
    "  --warmup W     run W untimed times first (default 0)\n";

struct Arguments {
  std::string model;
  std::string image;
  std::optional<double> threshold;
  int threads = 0;
  bool optimize = true;
  bool require_sidecar = false;
  int repeat = 1;
  int warmup = 0;
};

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "detr_cli: " << message << "\n" << kUsage;
  std::exit(2);
}

double parse_number(const std::string& flag, const char* text) {
  char* end = nullptr;
  double value = std::strtod(text, &end);
  if (end == text || *end != '\0') usage_error(flag + " needs a number, got '" + text + "'");
  return value;
}

Arguments parse_arguments(int argc, char** argv) {
  Arguments args;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) usage_error(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else if (arg == "--threshold") {
      args.threshold = parse_number(arg, value());
    } else if (arg == "--threads") {
      double threads = parse_number(arg, value());
      const int maximum = detr::max_num_threads();
      if (!(threads >= 1 && threads <= maximum) || threads != std::floor(threads)) {
        usage_error("--threads needs an integer in 1.." + std::to_string(maximum) + " (4 x this machine's CPUs)");
      }
      args.threads = static_cast<int>(threads);
    } else if (arg == "--repeat") {
      double repeat = parse_number(arg, value());
      if (!(repeat >= 1 && repeat <= 1e6) || repeat != std::floor(repeat)) {
        usage_error("--repeat needs an integer in 1..1000000");
      }
      args.repeat = static_cast<int>(repeat);
    } else if (arg == "--warmup") {
      double warmup = parse_number(arg, value());
      if (!(warmup >= 0 && warmup <= 1e6) || warmup != std::floor(warmup)) {
        usage_error("--warmup needs an integer in 0..1000000");
      }
      args.warmup = static_cast<int>(warmup);
    } else if (arg == "--no-optimize") {
      args.optimize = false;
    } else if (arg == "--require-sidecar") {
      args.require_sidecar = true;
    } else if (arg.size() > 1 && arg[0] == '-') {
      usage_error("unknown option " + arg);
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.size() != 2) usage_error("expected MODEL and IMAGE");
  args.model = positional[0];
  args.image = positional[1];
  return args;
}

std::string to_json(const Arguments& args, const detr::Detector& detector, const cv::Mat& rgb,
                    const detr::Detections& found, double threshold, double milliseconds,
                    const std::vector<double>& run_times) {
  const auto& names = detector.metadata().class_names;
  std::string out = "{\n";
  out += "  \"model\": " + detr::json::quote(args.model) + ",\n";
  out += "  \"sha256\": " + detr::json::quote(detector.sha256()) + ",\n";
  out += std::string("  \"verified\": ") + (detector.verified() ? "true" : "false") + ",\n";
  out += "  \"image\": " + detr::json::quote(args.image) + ",\n";
  out += "  \"height\": " + std::to_string(rgb.rows) + ",\n";
  out += "  \"width\": " + std::to_string(rgb.cols) + ",\n";
  out += "  \"backend\": " + detr::json::quote(detector.backend_name()) + ",\n";
  out += std::string("  \"optimized\": ") + (detector.optimized() ? "true" : "false") + ",\n";
  out += "  \"score_threshold\": " + detr::json::number(threshold) + ",\n";
  out += "  \"inference_ms\": " + detr::json::number(milliseconds) + ",\n";
  out += "  \"run_ms\": [";
  for (std::size_t i = 0; i < run_times.size(); ++i) out += (i ? ", " : "") + detr::json::number(run_times[i]);
  out += "],\n";
  out += "  \"detections\": [";
  for (std::size_t i = 0; i < found.size(); ++i) {
    const std::int64_t label = found.labels[i];
    const std::string name = label >= 0 && label < static_cast<std::int64_t>(names.size()) ? names[label] : "?";
    out += i ? ",\n    " : "\n    ";
    out += "{\"label\": " + std::to_string(label) + ", \"class_name\": " + detr::json::quote(name) +
           ", \"score\": " + detr::json::number(found.scores[i]) + ", \"box\": [";
    for (int k = 0; k < 4; ++k) out += (k ? ", " : "") + detr::json::number(found.boxes[4 * i + k]);
    out += "]}";
  }
  out += found.size() ? "\n  ]\n}\n" : "]\n}\n";
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const Arguments args = parse_arguments(argc, argv);
  try {
    // Decode as 8-bit, 3-channel BGR (OpenCV's order); IGNORE_ORIENTATION keeps the pixels
    // as stored, like Pillow (detr_deploy.images.read_image), so both see the same image.
    cv::Mat bgr = cv::imread(args.image, cv::IMREAD_COLOR | cv::IMREAD_IGNORE_ORIENTATION);
    if (bgr.empty()) {
      std::cerr << "detr_cli: could not read image '" << args.image << "' (missing or not a format OpenCV decodes)\n";
      return 1;
    }
    // BGR -> RGB into a new buffer (cvtColor's destination is a fresh, continuous Mat).
    cv::Mat rgb;
    cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);

    detr::Options options;
    options.num_threads = args.threads;
    options.optimize = args.optimize;
    options.require_sidecar = args.require_sidecar;
    detr::Detector detector(args.model, options);
    const double threshold = args.threshold.value_or(detector.metadata().score_threshold);

    const detr::ImageView view{rgb.ptr<std::uint8_t>(), rgb.rows, rgb.cols};
    detr::Detections found;
    std::vector<double> times;
    for (int run = 0; run < args.warmup; ++run) detector.detect(view, threshold);
    for (int run = 0; run < args.repeat; ++run) {
      const auto start = std::chrono::steady_clock::now();
      found = detector.detect(view, threshold);
      times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
    std::vector<double> sorted_times = times;
    std::sort(sorted_times.begin(), sorted_times.end());
    std::cout << to_json(args, detector, rgb, found, threshold, sorted_times[sorted_times.size() / 2], times);
    return 0;
  } catch (const detr::Error& error) {
    std::cerr << "detr_cli: " << error.what() << "\n";
  } catch (const std::exception& error) {
    std::cerr << "detr_cli: unexpected error: " << error.what() << "\n";
  }
  return 1;
}
