//! Greening the world: tests, examples and benchmarks of eventlet's monkey
//! patch with unmodified crates (`redis`, `ureq`, libpq through `pq-sys`)
//! against real servers. The library itself is empty: see `tests/`,
//! `examples/` and `benches/`.
