"""Copies the built libmoe.so into the package at install time.

The library is taken from the MOE_LIBRARY environment variable, else from
the repository's build/ directory (../build/libmoe.so from here). When
neither exists the package installs without it and finds the library at run
time (MOE_LIBRARY, then the system loader).
"""

import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def built_library():
    env = os.environ.get("MOE_LIBRARY")
    if env:
        if not os.path.isfile(env):
            raise SystemExit("MOE_LIBRARY=%s: no such file" % env)
        return env
    candidate = os.path.join(HERE, os.pardir, "build", "libmoe.so")
    if os.path.isfile(candidate):
        return os.path.normpath(candidate)
    return None


class build_py_with_library(build_py):
    def run(self):
        super().run()
        lib = built_library()
        dest = os.path.join(self.build_lib, "moe", "libmoe.so")
        if lib is None:
            print("moe: no built libmoe.so found (set MOE_LIBRARY or build "
                  "into ../build); the package will look for it at run time")
            if os.path.exists(dest):
                os.remove(dest)
            return
        print("moe: bundling %s" % lib)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(lib, dest)  # follows the libmoe.so -> .so.0 links
        os.chmod(dest, 0o755)


setup(cmdclass={"build_py": build_py_with_library})
