"""Parts of diffusers' own test suite (Apache-2.0), copied with their origin stated in each file."""
