# Sourced by scripts/test.sh: tests that need a program from Debian's packages (a real
# Prometheus for the dashboard test; chromium for the console's browser tests, driven by
# Playwright: no browser is downloaded from elsewhere). Each is installed where it is
# missing and apt-get can (as root); otherwise its tests fail and say how to install it.
need_debian_package() {  # COMMAND PACKAGE WHAT-FOR
  local cmd="$1" pkg="$2" why="$3"
  command -v "$cmd" >/dev/null 2>&1 && return 0
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing $pkg (Debian's package, for $why) ..." >&2
    apt-get install -y -q --no-install-recommends "$pkg" >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 \
           && apt-get install -y -q --no-install-recommends "$pkg" >/dev/null 2>&1; } \
      || echo "warning: could not install $pkg; $why will fail" >&2
  else
    echo "warning: $cmd is missing (apt-get install $pkg); $why will fail" >&2
  fi
}
