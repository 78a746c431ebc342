# The test service for serversets-thriftset: one quick call and one call
# whose duration the caller chooses, so tests and benchmarks can make a
# backend slow. The generated Rust code lives in tests/support/echo.rs;
# regenerate it with the command in README.md.
namespace rs echo

service Echo {
  # Returns its argument.
  string echo(1: string message)

  # Sleeps for `ms` milliseconds (times the backend's slow-down factor) and
  # returns `ms`.
  i32 slow(1: i32 ms)
}
