# Sourced by scripts/test.sh: the console's browser tests drive Debian's chromium through
# Playwright (no browser is downloaded from elsewhere). Install it where it is missing and
# apt-get can (as root); otherwise those tests fail and say how to install it.
_install_chromium() {
  apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1
}
if ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing chromium (Debian's package, for the console's browser tests) ..." >&2
    _install_chromium || { apt-get update -q >/dev/null 2>&1 && _install_chromium; } \
      || echo "warning: could not install chromium; the browser tests will fail" >&2
  else
    echo "warning: chromium is missing (apt-get install chromium); the browser tests will fail" >&2
  fi
fi
