#!/usr/bin/env bash
# Install the system packages the standalone C++ program (cpp/detr_cli, built with CMake)
# needs: a C++ compiler, CMake, make and OpenCV's C++ libraries for decoding images
# (core, imgproc, imgcodecs only, not the whole of libopencv-dev).
#
# libtorch itself is NOT installed here: CMake uses the torch wheel already in the Python
# environment. The cppimport module (detr_cpp) needs only the compiler.
#
# Idempotent: installs only what is missing and does nothing when everything is present.
# As root it runs apt-get; otherwise it prints the command to run and exits with status 1.
#
#   scripts/install_system_deps.sh            # install what is missing
#   scripts/install_system_deps.sh --check    # only report; exit 1 when something is missing
set -euo pipefail

# command that must exist -> Debian/Ubuntu package providing it
COMMANDS=("g++:g++" "cmake:cmake" "make:make" "readelf:binutils")
# development packages (headers + .so links) checked with dpkg
LIBRARIES=(libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev)

check_only=0
case "${1:-}" in
  --check) check_only=1 ;;
  "") ;;
  -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

missing=()
for entry in "${COMMANDS[@]}"; do
  command -v "${entry%%:*}" >/dev/null 2>&1 || missing+=("${entry##*:}")
done
have_dpkg=0
command -v dpkg-query >/dev/null 2>&1 && have_dpkg=1
for package in "${LIBRARIES[@]}"; do
  if [ "$have_dpkg" -eq 1 ]; then
    status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$package")
  else
    missing+=("$package")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "system dependencies for the C++ program: all present"
  exit 0
fi

echo "missing system packages: ${missing[*]}"
if [ "$check_only" -eq 1 ]; then
  echo "run scripts/install_system_deps.sh (as root) to install them" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: apt-get not found. Install a C++20 compiler, CMake >= 3.18 and OpenCV's C++" >&2
  echo "development files (core, imgproc, imgcodecs) with your system's package manager." >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "error: installing system packages needs root. Run:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "installed: ${missing[*]}"
