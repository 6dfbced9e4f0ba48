"""Load benchmarks: the engine, its histogram, reports, and the seed's benchmark modes."""
