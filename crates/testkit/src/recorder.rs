//! A metrics recorder that can be switched on and off, to measure the same
//! code with and without a recorder in one run (the benchmarks of core,
//! httpset and mcset share it).
//!
//! The switch is read when a metric is *registered*: handles taken while it
//! is off are no-ops for good, handles taken while it is on record into the
//! Prometheus recorder `serversets --metrics-addr` installs. So build the
//! object measured "without" while it is off, and the one measured "with"
//! while it is on; then both run side by side, in alternating samples.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

struct Switch {
    on: AtomicBool,
    inner: PrometheusRecorder,
}

/// The installed switch, as the global recorder sees it.
struct Installed(&'static Switch);

impl Recorder for Installed {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.inner.describe_counter(key, unit, description);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.inner.describe_gauge(key, unit, description);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.inner.describe_histogram(key, unit, description);
    }
    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        if self.0.on.load(Ordering::SeqCst) {
            self.0.inner.register_counter(key, metadata)
        } else {
            Counter::noop()
        }
    }
    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        if self.0.on.load(Ordering::SeqCst) {
            self.0.inner.register_gauge(key, metadata)
        } else {
            Gauge::noop()
        }
    }
    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        if self.0.on.load(Ordering::SeqCst) {
            self.0.inner.register_histogram(key, metadata)
        } else {
            Histogram::noop()
        }
    }
}

fn switch() -> &'static Switch {
    static SWITCH: OnceLock<&'static Switch> = OnceLock::new();
    SWITCH.get_or_init(|| {
        let switch: &'static Switch = Box::leak(Box::new(Switch {
            on: AtomicBool::new(false),
            inner: PrometheusBuilder::new().build_recorder(),
        }));
        let handle = switch.inner.handle();
        if metrics::set_global_recorder(Installed(switch)).is_err() {
            eprintln!("bench: a metrics recorder was already installed");
        }
        // What `install()` does: drain histograms in the background.
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            handle.run_upkeep();
        });
        switch
    })
}

/// Runs `build` with the recorder on (installing it first if needed):
/// what it registers records for real.
pub fn recorded<T>(build: impl FnOnce() -> T) -> T {
    let s = switch();
    s.on.store(true, Ordering::SeqCst);
    let built = build();
    s.on.store(false, Ordering::SeqCst);
    built
}

/// Switches the recorder on or off (installing it first if needed), for
/// objects built by an `async` function: on before awaiting it, off after.
pub fn set_on(on: bool) {
    switch().on.store(on, Ordering::SeqCst);
}

/// Installs the (switched-off) recorder: call before building anything to
/// be measured without one.
pub fn install() {
    switch();
}

/// The Prometheus text of everything recorded so far.
pub fn render() -> String {
    switch().inner.handle().render()
}
