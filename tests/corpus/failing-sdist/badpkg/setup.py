from setuptools import setup
raise RuntimeError("this package cannot be built here: missing libfoo headers")
setup(name="stcloud-badpkg", version="1.0")
