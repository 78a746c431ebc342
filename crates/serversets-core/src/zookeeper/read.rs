//! Reading member data in bulk: ZooKeeper 3.6+ multi-read batches, with
//! pipelined single reads for older servers.
//!
//! One multi-read of a few hundred members costs about what one single read
//! does, so a cold start or a resync of 10,000 members takes tens of
//! milliseconds instead of most of a second. Batches are bounded by count
//! and by bytes, both ways: the request by the paths it carries, the reply by
//! the member sizes seen so far, both well under ZooKeeper's default
//! `jute.maxbuffer` of 1 MiB. A batch that fails halves the size of the
//! next ones (a server with a smaller buffer closes the connection on an
//! oversized request, which looks like any other lost connection), and
//! successes grow it back.
//!
//! A batch that fails leaves every name in it unread: the caller sees an
//! error for each and reads them again at its next resync.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use futures::future::join_all;
use zookeeper_client as zk;

/// The most operations one multi-read carries.
const MAX_BATCH: usize = 1000;
/// The least a batch shrinks to.
const MIN_BATCH: usize = 8;
/// Bytes of paths one request may carry.
const REQUEST_BUDGET: usize = 256 * 1024;
/// Bytes of member data one reply is expected to carry.
const REPLY_BUDGET: usize = 512 * 1024;
/// What a member is assumed to weigh before any has been read.
const FIRST_GUESS: usize = 1024;

/// One name to read, with the caller's tag for it (to tell a newer read of
/// the same name from an older one).
pub(crate) type Wanted = (String, u64);
/// One name's result.
pub(crate) type Got = (String, u64, Result<Vec<u8>, zk::Error>);
/// A batch of reads in flight; independent of the borrowed client.
pub(crate) type Batch = Pin<Box<dyn Future<Output = Vec<Got>> + Send>>;

/// Reads members of one set; shared by every read of a watch, so what one
/// batch learns (sizes, an old server) shapes the next.
#[derive(Debug)]
pub(crate) struct Reader {
    /// False on servers without multi-read (before 3.6), or when configured.
    multi: AtomicBool,
    /// How many operations the next batch may carry.
    batch: AtomicUsize,
    /// Average member size seen, in bytes.
    member_bytes: AtomicUsize,
    /// Requests sent, for [`WatchStats`](crate::WatchStats).
    pub(crate) single_reads: AtomicU64,
    pub(crate) multi_reads: AtomicU64,
    /// The same, as `serversets_watch_reads_total{set,kind}` (no-ops
    /// unless built [`with_metrics`](Reader::with_metrics)).
    single_counter: metrics::Counter,
    multi_counter: metrics::Counter,
}

impl Reader {
    /// A reader whose requests are counted only in its own fields.
    #[cfg(test)]
    pub(crate) fn new(multi: bool) -> Arc<Reader> {
        Reader::counted(multi, metrics::Counter::noop(), metrics::Counter::noop())
    }

    /// A reader whose requests are also counted in
    /// `serversets_watch_reads_total` for the set at `path`.
    pub(crate) fn with_metrics(multi: bool, path: &str) -> Arc<Reader> {
        metrics::describe_counter!(
            "serversets_watch_reads_total",
            "ZooKeeper read requests a watch sent: kind=single (one member) or multi (a batch)"
        );
        let counter = |kind: &'static str| metrics::counter!("serversets_watch_reads_total", "set" => path.to_string(), "kind" => kind);
        Reader::counted(multi, counter("single"), counter("multi"))
    }

    fn counted(
        multi: bool,
        single_counter: metrics::Counter,
        multi_counter: metrics::Counter,
    ) -> Arc<Reader> {
        Arc::new(Reader {
            multi: AtomicBool::new(multi),
            batch: AtomicUsize::new(MAX_BATCH),
            member_bytes: AtomicUsize::new(FIRST_GUESS),
            single_reads: AtomicU64::new(0),
            multi_reads: AtomicU64::new(0),
            single_counter,
            multi_counter,
        })
    }

    /// Read requests sent so far, single and multi.
    pub(crate) fn requests(&self) -> u64 {
        self.single_reads.load(Ordering::Relaxed) + self.multi_reads.load(Ordering::Relaxed)
    }

    /// Splits `names` into batches sized for the next requests.
    pub(crate) fn plan(&self, path: &str, names: Vec<Wanted>) -> Vec<Vec<Wanted>> {
        let per_op = path.len() + 1 + names.first().map_or(16, |(n, _)| n.len()) + 16;
        let count = self
            .batch
            .load(Ordering::Relaxed)
            .min(REQUEST_BUDGET / per_op)
            .min(REPLY_BUDGET / self.member_bytes.load(Ordering::Relaxed).max(1))
            .max(1);
        let mut batches = Vec::with_capacity(names.len().div_ceil(count));
        let mut names = names.into_iter().peekable();
        while names.peek().is_some() {
            batches.push(names.by_ref().take(count).collect());
        }
        batches
    }

    /// Reads one batch: one multi-read where the server has it, otherwise
    /// (or for a lone name) pipelined single reads.
    pub(crate) fn read(
        self: &Arc<Self>,
        client: &zk::Client,
        path: &str,
        names: Vec<Wanted>,
    ) -> Batch {
        let reader = self.clone();
        let client = client.clone();
        let path = path.to_string();
        Box::pin(async move {
            if names.len() > 1 && reader.multi.load(Ordering::Relaxed) {
                match reader.multi_read(&client, &path, &names).await {
                    Ok(results) => return results,
                    Err(zk::Error::Unimplemented) => {
                        tracing::info!(path = %path, "ZooKeeper has no multi-read (before 3.6); reading members one by one");
                        reader.multi.store(false, Ordering::Relaxed);
                    }
                    Err(e) => {
                        reader.shrink();
                        return names
                            .into_iter()
                            .map(|(n, t)| (n, t, Err(e.clone())))
                            .collect();
                    }
                }
            }
            reader
                .single_reads
                .fetch_add(names.len() as u64, Ordering::Relaxed);
            reader.single_counter.increment(names.len() as u64);
            let reads = names.into_iter().map(|(name, tag)| {
                let read = client.get_data(&format!("{path}/{name}"));
                async move { (name, tag, read.await.map(|(data, _)| data)) }
            });
            let got = join_all(reads).await;
            reader.learn_sizes(&got);
            got
        })
    }

    async fn multi_read(
        &self,
        client: &zk::Client,
        path: &str,
        names: &[Wanted],
    ) -> Result<Vec<Got>, zk::Error> {
        let mut request = client.new_multi_reader();
        for (name, _) in names {
            request.add_get_data(&format!("{path}/{name}"))?;
        }
        self.multi_reads.fetch_add(1, Ordering::Relaxed);
        self.multi_counter.increment(1);
        let results = request.commit().await?;
        if results.len() != names.len() {
            // The reply does not match the request: nothing in it can be
            // trusted to belong to a name.
            return Err(zk::Error::UnexpectedError(format!(
                "multi-read of {} members answered {} results",
                names.len(),
                results.len()
            )));
        }
        let got: Vec<Got> = names
            .iter()
            .zip(results)
            .map(|((name, tag), result)| {
                let result = match result {
                    zk::MultiReadResult::Data { data, .. } => Ok(data),
                    zk::MultiReadResult::Error { err } => Err(err),
                    _ => Err(zk::Error::UnexpectedError(
                        "multi-read answered a data read with something else".into(),
                    )),
                };
                (name.clone(), *tag, result)
            })
            .collect();
        self.learn_sizes(&got);
        self.grow();
        Ok(got)
    }

    fn learn_sizes(&self, got: &[Got]) {
        let (n, bytes) = got
            .iter()
            .filter_map(|(_, _, r)| r.as_ref().ok())
            .fold((0usize, 0usize), |(n, b), d| (n + 1, b + d.len()));
        // Weighted towards what was just seen, never below a floor so one
        // batch of tiny members cannot make the next one huge.
        if let Some(avg) = bytes.checked_div(n) {
            let avg = avg.max(64);
            let old = self.member_bytes.load(Ordering::Relaxed);
            self.member_bytes
                .store((old + 3 * avg) / 4, Ordering::Relaxed);
        }
    }

    fn shrink(&self) {
        let _ = self
            .batch
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some((b / 2).max(MIN_BATCH))
            });
    }

    fn grow(&self) {
        let _ = self
            .batch
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some((b * 2).min(MAX_BATCH))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<Wanted> {
        (0..n)
            .map(|i| (format!("member_{i:010}"), i as u64))
            .collect()
    }

    #[test]
    fn plans_cover_every_name_once_in_order() {
        let reader = Reader::new(true);
        let batches = reader.plan("/discovery/prod/users", names(2500));
        assert!(batches
            .iter()
            .all(|b| !b.is_empty() && b.len() <= MAX_BATCH));
        let flat: Vec<Wanted> = batches.into_iter().flatten().collect();
        assert_eq!(flat, names(2500));
    }

    #[test]
    fn large_members_make_small_batches() {
        let reader = Reader::new(true);
        let small = reader.plan("/s", names(5000)).len();
        let big: Vec<Got> = (0..10)
            .map(|i| (format!("m{i}"), 0, Ok(vec![0u8; 100_000])))
            .collect();
        reader.learn_sizes(&big);
        reader.learn_sizes(&big);
        let batches = reader.plan("/s", names(5000));
        assert!(batches.len() > small, "{} !> {small}", batches.len());
        let per_batch = batches[0].len();
        assert!(
            per_batch * reader.member_bytes.load(Ordering::Relaxed) <= REPLY_BUDGET,
            "a batch of {per_batch} is expected to exceed the reply budget"
        );
    }

    #[test]
    fn failures_halve_the_batch_down_to_a_floor_and_successes_grow_it_back() {
        let reader = Reader::new(true);
        for _ in 0..20 {
            reader.shrink();
        }
        assert_eq!(reader.batch.load(Ordering::Relaxed), MIN_BATCH);
        assert_eq!(reader.plan("/s", names(100))[0].len(), MIN_BATCH);
        for _ in 0..20 {
            reader.grow();
        }
        assert_eq!(reader.batch.load(Ordering::Relaxed), MAX_BATCH);
    }

    #[test]
    fn long_paths_bound_the_request() {
        let reader = Reader::new(true);
        let long = "/x".repeat(2000);
        let batches = reader.plan(&long, names(1000));
        let per_op = long.len() + 1 + 17 + 16;
        assert!(batches[0].len() * per_op <= REQUEST_BUDGET);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_reports_each_names_own_result_against_a_real_server() {
        let server = testkit::ZkCluster::standalone().unwrap();
        let client = testkit::znodes::connect(&server.connect_string())
            .await
            .unwrap();
        let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        client.mkdir("/set", &open).await.unwrap();
        client
            .create("/set/member_a", b"alpha", &open)
            .await
            .unwrap();
        let secret = zk::CreateMode::Persistent.with_acls(zk::Acls::creator_all());
        let owner = zk::Client::connector()
            .with_auth("digest", b"owner:pw")
            .connect(&server.connect_string())
            .await
            .unwrap();
        owner
            .create("/set/member_b", b"beta", &secret)
            .await
            .unwrap();
        let wanted: Vec<Wanted> = ["member_a", "member_gone", "member_b"]
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), i as u64))
            .collect();
        for multi in [true, false] {
            let reader = Reader::new(multi);
            let got = reader.read(&client, "/set", wanted.clone()).await;
            let got: Vec<(String, u64, Result<Vec<u8>, zk::Error>)> = got;
            assert_eq!(got.len(), 3, "multi={multi}");
            assert_eq!(got[0], ("member_a".into(), 0, Ok(b"alpha".to_vec())));
            assert_eq!(got[1], ("member_gone".into(), 1, Err(zk::Error::NoNode)));
            assert_eq!(got[2], ("member_b".into(), 2, Err(zk::Error::NoAuth)));
            let (singles, multis) = (
                reader.single_reads.load(Ordering::Relaxed),
                reader.multi_reads.load(Ordering::Relaxed),
            );
            if multi {
                assert_eq!((singles, multis), (0, 1));
            } else {
                assert_eq!((singles, multis), (3, 0));
            }
        }
    }
}
