//! WASI 0.2 for tasks: nothing ambient, and every outside value journaled.
//!
//! A task gets no environment variables, no arguments, no preopened directories, no stdin and no
//! network. Its stdout and stderr feed the attempt's log ([`super::log`]). The wall clock, the
//! monotonic clock (which starts near zero for every attempt), the secure and insecure random
//! generators and the insecure seed are served by the recording implementations below, which append
//! each value to the journal before returning it.

use std::convert::Infallible;
use std::time::{Duration, Instant, SystemTime};

use rand::SeedableRng;
use rand_core::TryRng;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView,
};

use super::log::{LogSink, StdStream};
use crate::journal::{Journal, WasiCall, WasiEntry};

/// The `wasi:random/insecure-seed` instance this host serves (shadowing wasmtime-wasi's).
const INSECURE_SEED_INSTANCE: &str = "wasi:random/insecure-seed@0.2.12";
/// The `wasi:random` instances whose `get-*-random-bytes` this host serves itself.
const RANDOM_INSTANCE: &str = "wasi:random/random@0.2.12";
const INSECURE_INSTANCE: &str = "wasi:random/insecure@0.2.12";
/// The most random bytes one call may ask for (wasmtime-wasi's own limit).
const MAX_RANDOM_BYTES: u64 = 64 << 20;

/// The WASI 0.2 interfaces this module serves (wasmtime-wasi's `wasi:cli/imports` world).
/// Sockets are served but every address is denied, so a guest that links them gets errors at
/// run time rather than a failed deploy.
pub const INTERFACES: &[&str] = &[
    "wasi:io/error@0.2.12",
    "wasi:io/poll@0.2.12",
    "wasi:io/streams@0.2.12",
    "wasi:clocks/wall-clock@0.2.12",
    "wasi:clocks/monotonic-clock@0.2.12",
    "wasi:random/random@0.2.12",
    "wasi:random/insecure@0.2.12",
    "wasi:random/insecure-seed@0.2.12",
    "wasi:cli/environment@0.2.12",
    "wasi:cli/exit@0.2.12",
    "wasi:cli/stdin@0.2.12",
    "wasi:cli/stdout@0.2.12",
    "wasi:cli/stderr@0.2.12",
    "wasi:cli/terminal-input@0.2.12",
    "wasi:cli/terminal-output@0.2.12",
    "wasi:cli/terminal-stdin@0.2.12",
    "wasi:cli/terminal-stdout@0.2.12",
    "wasi:cli/terminal-stderr@0.2.12",
    "wasi:filesystem/types@0.2.12",
    "wasi:filesystem/preopens@0.2.12",
    "wasi:sockets/network@0.2.12",
    "wasi:sockets/instance-network@0.2.12",
    "wasi:sockets/tcp@0.2.12",
    "wasi:sockets/tcp-create-socket@0.2.12",
    "wasi:sockets/udp@0.2.12",
    "wasi:sockets/udp-create-socket@0.2.12",
    "wasi:sockets/ip-name-lookup@0.2.12",
];

/// The WASI state of one instance: the context, built on the guest's first WASI call (so a task
/// that makes none pays nothing for its clocks, generators and stdio).
pub struct WasiState {
    ctx: Option<WasiCtx>,
    /// When the attempt started (the origin of the guest's monotonic clock).
    started: Instant,
}

impl WasiState {
    /// State for an attempt that started at `started`; no context is built yet.
    pub fn new(started: Instant) -> WasiState {
        WasiState { ctx: None, started }
    }

    /// wasmtime-wasi's view over `table` (shared with every other capability's resources): the
    /// context, built on first use with its outside values answered by `journal` and its stdout
    /// and stderr feeding `logs`.
    pub fn view<'a>(
        &'a mut self,
        table: &'a mut ResourceTable,
        journal: &Journal,
        logs: &LogSink,
    ) -> WasiCtxView<'a> {
        let started = self.started;
        let ctx = self
            .ctx
            .get_or_insert_with(|| build_ctx(journal, logs, started));
        WasiCtxView { ctx, table }
    }
}

/// Builds the WASI context of one attempt that started at `started` (the origin of its
/// monotonic clock).
fn build_ctx(journal: &Journal, logs: &LogSink, started: Instant) -> WasiCtx {
    let mut builder = WasiCtxBuilder::new();
    builder
        .stdout(StdStream::stdout(logs))
        .stderr(StdStream::stderr(logs))
        .wall_clock(RecordingWallClock {
            journal: journal.clone(),
        })
        .monotonic_clock(RecordingMonotonicClock {
            journal: journal.clone(),
            initial: started,
        })
        .secure_random(RecordingRng::new(journal.clone(), true))
        .insecure_random(RecordingRng::new(journal.clone(), false))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    builder.build()
}

/// Registers WASI 0.2 (wasmtime-wasi's, through the store data's [`WasiView`]) and this
/// module's own `wasi:random/insecure-seed` and `get-*-random-bytes`, which record into the
/// journal `journal` finds in the store data.
pub fn add_to_linker<T: WasiView + 'static>(
    linker: &mut Linker<T>,
    journal: fn(&mut T) -> &Journal,
) -> anyhow::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    linker.allow_shadowing(true);
    linker.instance(INSECURE_SEED_INSTANCE)?.func_wrap(
        "insecure-seed",
        move |mut store: wasmtime::StoreContextMut<'_, T>, (): ()| {
            let answer = journal(store.data_mut()).answer(WasiCall::InsecureSeed, || {
                let seed: u128 = rand::random();
                WasiEntry::InsecureSeed {
                    hi: (seed >> 64) as u64,
                    lo: seed as u64,
                }
            });
            let seed = match answer {
                Some(WasiEntry::InsecureSeed { hi, lo }) => (hi, lo),
                _ => (0, 0),
            };
            Ok::<_, wasmtime::Error>((seed,))
        },
    )?;
    // wasmtime-wasi draws `get-random-bytes(n)` one byte at a time from the generator, which
    // journaled one 4-byte entry per byte (componentize-py's 2,496-byte reseed of Python's
    // `random` at instantiation made 2,496 entries); serve the call itself, as one entry.
    linker.instance(RANDOM_INSTANCE)?.func_wrap(
        "get-random-bytes",
        move |mut store: wasmtime::StoreContextMut<'_, T>, (len,): (u64,)| {
            random_bytes(journal(store.data_mut()), true, len)
        },
    )?;
    linker.instance(INSECURE_INSTANCE)?.func_wrap(
        "get-insecure-random-bytes",
        move |mut store: wasmtime::StoreContextMut<'_, T>, (len,): (u64,)| {
            random_bytes(journal(store.data_mut()), false, len)
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// `len` random bytes, journaled as one entry (replayed from it).
fn random_bytes(journal: &Journal, secure: bool, len: u64) -> wasmtime::Result<(Vec<u8>,)> {
    if len > MAX_RANDOM_BYTES {
        wasmtime::bail!("requested {len} random bytes, more than the limit of {MAX_RANDOM_BYTES}");
    }
    let len = len as usize;
    let call = WasiCall::RandomBytes { secure, len };
    let answer = journal.answer(call, || {
        let mut bytes = vec![0; len];
        rand::Rng::fill_bytes(&mut rand::rng(), &mut bytes);
        WasiEntry::RandomBytes {
            secure,
            hex: hex::encode(bytes),
        }
    });
    let bytes = match answer {
        Some(WasiEntry::RandomBytes { hex, .. }) => hex::decode(hex).ok(),
        _ => None,
    };
    Ok((bytes
        .filter(|b| b.len() == len)
        .unwrap_or_else(|| vec![0; len]),))
}

struct RecordingWallClock {
    journal: Journal,
}

impl HostWallClock for RecordingWallClock {
    fn resolution(&self) -> Duration {
        let answer = self.journal.answer(WasiCall::WallClockResolution, || {
            WasiEntry::WallClockResolution {
                seconds: 0,
                nanos: 1,
            }
        });
        match answer {
            Some(WasiEntry::WallClockResolution { seconds, nanos }) => {
                Duration::new(seconds, nanos)
            }
            _ => Duration::from_nanos(1),
        }
    }

    fn now(&self) -> Duration {
        let answer = self.journal.answer(WasiCall::WallClockNow, || {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            WasiEntry::WallClockNow {
                seconds: now.as_secs(),
                nanos: now.subsec_nanos(),
            }
        });
        match answer {
            Some(WasiEntry::WallClockNow { seconds, nanos }) => Duration::new(seconds, nanos),
            _ => Duration::ZERO,
        }
    }
}

struct RecordingMonotonicClock {
    journal: Journal,
    initial: Instant,
}

impl HostMonotonicClock for RecordingMonotonicClock {
    fn resolution(&self) -> u64 {
        let answer = self.journal.answer(WasiCall::MonotonicResolution, || {
            WasiEntry::MonotonicResolution { nanos: 1 }
        });
        match answer {
            Some(WasiEntry::MonotonicResolution { nanos }) => nanos,
            _ => 1,
        }
    }

    fn now(&self) -> u64 {
        let initial = self.initial;
        let answer = self
            .journal
            .answer(WasiCall::MonotonicNow, || WasiEntry::MonotonicNow {
                nanos: initial.elapsed().as_nanos() as u64,
            });
        match answer {
            Some(WasiEntry::MonotonicNow { nanos }) => nanos,
            _ => 0,
        }
    }
}

/// A random generator that journals every byte it hands out. The underlying ChaCha generator is
/// seeded from the OS on first use, so attempts that never ask for randomness pay nothing.
struct RecordingRng {
    journal: Journal,
    secure: bool,
    inner: Option<rand::rngs::StdRng>,
}

impl RecordingRng {
    fn new(journal: Journal, secure: bool) -> RecordingRng {
        RecordingRng {
            journal,
            secure,
            inner: None,
        }
    }

    fn draw(&mut self, dst: &mut [u8]) {
        let call = WasiCall::RandomBytes {
            secure: self.secure,
            len: dst.len(),
        };
        let (secure, inner) = (self.secure, &mut self.inner);
        let answer = self.journal.answer(call, || {
            let rng = inner.get_or_insert_with(|| rand::rngs::StdRng::from_rng(&mut rand::rng()));
            let mut bytes = vec![0; dst.len()];
            rand::Rng::fill_bytes(rng, &mut bytes);
            WasiEntry::RandomBytes {
                secure,
                hex: hex::encode(bytes),
            }
        });
        match answer.and_then(|entry| match entry {
            WasiEntry::RandomBytes { hex, .. } => hex::decode(hex).ok(),
            _ => None,
        }) {
            Some(bytes) if bytes.len() == dst.len() => dst.copy_from_slice(&bytes),
            _ => dst.fill(0),
        }
    }
}

impl TryRng for RecordingRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0; 4];
        self.draw(&mut bytes);
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0; 8];
        self.draw(&mut bytes);
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.draw(dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng as _;

    #[test]
    fn rng_journals_every_draw() {
        let journal = Journal::default();
        let mut rng = RecordingRng::new(journal.clone(), true);
        let value = rng.next_u64();
        let mut buf = [0u8; 3];
        rng.fill_bytes(&mut buf);
        let entries = journal.take();
        assert_eq!(
            entries[0],
            WasiEntry::RandomBytes {
                secure: true,
                hex: hex::encode(value.to_le_bytes())
            }
            .into()
        );
        assert_eq!(
            entries[1],
            WasiEntry::RandomBytes {
                secure: true,
                hex: hex::encode(buf)
            }
            .into()
        );
    }

    #[test]
    fn clocks_journal_reads() {
        let journal = Journal::default();
        let wall = RecordingWallClock {
            journal: journal.clone(),
        };
        let mono = RecordingMonotonicClock {
            journal: journal.clone(),
            initial: Instant::now(),
        };
        let now = wall.now();
        let tick = mono.now();
        let entries = journal.take();
        assert_eq!(
            entries,
            [
                WasiEntry::WallClockNow {
                    seconds: now.as_secs(),
                    nanos: now.subsec_nanos()
                }
                .into(),
                WasiEntry::MonotonicNow { nanos: tick }.into()
            ]
        );
    }
}
