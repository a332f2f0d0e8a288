# Sourced by scripts/test.sh: the dashboard test evaluates the shipped Grafana dashboard's
# queries against a real Prometheus. Install Debian's package where it is missing and
# apt-get can (as root); otherwise that test fails and says how to install it.
_install_prometheus() {
  apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1
}
if ! command -v prometheus >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing prometheus (Debian's package, for the dashboard test) ..." >&2
    _install_prometheus || { apt-get update -q >/dev/null 2>&1 && _install_prometheus; } \
      || echo "warning: could not install prometheus; the dashboard test will fail" >&2
  else
    echo "warning: prometheus is missing (apt-get install prometheus); the dashboard test will fail" >&2
  fi
fi
