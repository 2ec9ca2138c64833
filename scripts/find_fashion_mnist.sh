# Sourced by scripts that need real Fashion-MNIST: installs Debian's copy where it is missing and apt can.
# The loader also looks in <dataroot>/FashionMNIST/raw/ and downloads it through torchvision where a network is.
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ ! -d data/FashionMNIST/raw ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "installing Fashion-MNIST (Debian package dataset-fashion-mnist)" >&2
    { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; } >&2 \
      || echo "could not install dataset-fashion-mnist: trying a download instead" >&2
  fi
fi
