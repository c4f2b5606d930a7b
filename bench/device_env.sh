# Sourced, from the repository root, by the scripts that run on the GPU
# machine: unpacks the Debian packages carried in .debs/ (cmocka, jansson:
# the image may lack them) under $SYS and points the compiler, the linker
# and the loader at them. Sets SYS and LIBDIR.
SYS=/tmp/sys
if [ -d .debs ]; then
  for f in .debs/*.deb; do dpkg -x "$f" "$SYS"; done
fi
LIBDIR=$SYS/usr/lib/x86_64-linux-gnu
export CFLAGS="-I$SYS/usr/include" LDFLAGS="-L$LIBDIR"
export LIBRARY_PATH=$LIBDIR LD_LIBRARY_PATH=$LIBDIR:${LD_LIBRARY_PATH:-}
