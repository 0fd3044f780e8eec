#!/usr/bin/env bash
# Install the system packages the standalone C++ program (cpp/detr_cli, built with CMake)
# needs: a C++ compiler, CMake, make and OpenCV's C++ libraries for decoding images
# (core, imgproc, imgcodecs only, not the whole of libopencv-dev).
#
# libtorch itself is NOT installed here: CMake uses the torch wheel already in the Python
# environment. The cppimport module (detr_cpp) needs only the compiler.
#
# Idempotent: installs only what is missing and does nothing when everything is present,
# as root or not. When something is missing and cannot be installed (not root, or no
# apt-get), it prints what is missing and the command to run, and exits 0, so that what
# does not need the packages can go on; --strict makes that exit 1.
#
#   scripts/install_system_deps.sh            # install what is missing, or say how
#   scripts/install_system_deps.sh --strict   # the same; exit 1 if anything stays missing
#   scripts/install_system_deps.sh --check    # only report; exit 1 when something is missing
set -euo pipefail

# command that must exist -> Debian/Ubuntu package providing it
COMMANDS=("g++:g++" "cmake:cmake" "make:make" "readelf:binutils")
# development packages (headers + .so links) checked with dpkg
LIBRARIES=(libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev)

check_only=0
strict=0
for argument in "$@"; do
  case "$argument" in
    --check) check_only=1 ;;
    --strict) strict=1 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [--strict | --check]" >&2; exit 2 ;;
  esac
done

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

apt_command="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"

# Cannot install here: say what is missing and how to install it; fail only if asked to.
not_installed() {
  echo "missing system packages for the C++ program (cpp/detr_cli): ${missing[*]}" >&2
  echo "$1" >&2
  if [ "$check_only" -eq 1 ] || [ "$strict" -eq 1 ]; then
    exit 1
  fi
  local needs="building cpp/detr_cli (CMake) needs them"
  case " ${missing[*]} " in *" g++ "*) needs="$needs, and building the detr_cpp module needs g++" ;; esac
  echo "continuing without them ($needs; --strict stops here instead)" >&2
  exit 0
}

if [ "$check_only" -eq 1 ]; then
  not_installed "install them with: sudo sh -c '$apt_command'"
fi
if ! command -v apt-get >/dev/null 2>&1; then
  not_installed "apt-get not found: install a C++20 compiler, CMake >= 3.18 and OpenCV's C++ development files (core, imgproc, imgcodecs) with your system's package manager"
fi
if [ "$(id -u)" -ne 0 ]; then
  not_installed "installing them needs root; run: sudo sh -c '$apt_command'"
fi

echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "installed: ${missing[*]}"
