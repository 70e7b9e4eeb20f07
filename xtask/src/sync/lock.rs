//! One writer per project at a time: a lock held on the Prefect server while a run writes.
//!
//! Two runs of the same project at once (a Fly release and a developer's run, two merges deployed
//! back to back) interleave their writes on a server whose API workers run requests in parallel:
//! both add the same schedule, each sees the other's as drift, and one gives up and rolls back.
//! So a run that has something to write first creates the variable `xtask-lock-<project>-…`
//! (tagged [`LOCK_TAG`]); creating a variable whose name exists fails (409), which makes the
//! create a mutex. A second run waits for it (saying who holds it), then reads the server again.
//! The lock is deleted when the run ends, on every path but a hard kill; a lock whose holder died
//! expires after [`LOCK_TTL`] and is then taken over. Dry runs and `--check` only read: no lock.
//!
//! What the lock records and when it is stale is pure ([`LockRecord`]); [`acquire`] and
//! [`ServerLock`]'s drop are the edge.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use serde_json::{json, Value};

use super::desired::Ownership;
use crate::prefect::api::PrefectClient;

/// The tag of every lock variable.
pub const LOCK_TAG: &str = "xtask-lock";
/// A lock older than this is a dead run's: longer than any run (Fly stops a release command
/// long before) and short enough that a killed run does not block the next deploy for long.
pub const LOCK_TTL: Duration = Duration::from_secs(15 * 60);
/// How long a run waits for another run of the project to finish.
pub const LOCK_WAIT: Duration = Duration::from_secs(5 * 60);
const POLL: Duration = Duration::from_secs(1);

/// Who holds the lock and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRecord {
    /// Unique per run: tells our own lock from another's (also after a retried create).
    pub token: String,
    pub host: String,
    pub pid: u32,
    /// Seconds since the epoch, the holder's clock.
    pub acquired: u64,
    pub expires: u64,
}

impl LockRecord {
    pub fn to_value(&self) -> Value {
        json!({
            "token": self.token,
            "host": self.host,
            "pid": self.pid,
            "acquired": self.acquired,
            "expires": self.expires,
        })
    }

    /// The record in a lock variable's value; `None` for a value that is not one.
    pub fn from_value(value: &Value) -> Option<LockRecord> {
        Some(LockRecord {
            token: value.get("token")?.as_str()?.to_string(),
            host: value.get("host")?.as_str()?.to_string(),
            pid: u32::try_from(value.get("pid")?.as_u64()?).ok()?,
            acquired: value.get("acquired")?.as_u64()?,
            expires: value.get("expires")?.as_u64()?,
        })
    }

    /// A lock past its expiry belongs to a run that died without deleting it.
    pub fn is_stale(&self, now: u64) -> bool {
        now >= self.expires
    }

    /// "host pid 123 since 2026-11-30T07:45:00Z" for the messages.
    pub fn holder(&self) -> String {
        let since = jiff::Timestamp::from_second(self.acquired as i64)
            .map(|t| t.to_string())
            .unwrap_or_else(|_| self.acquired.to_string());
        format!("{} pid {} since {since}", self.host, self.pid)
    }
}

/// The lock variable of a project: `xtask-lock-<project>-<prefect file>-<hash>`
/// ([`Ownership::variable_name`]).
pub fn lock_name(owner: &Ownership) -> String {
    owner.variable_name(LOCK_TAG)
}

/// A held lock; deleted when dropped.
pub struct ServerLock<'a> {
    client: &'a PrefectClient,
    name: String,
    /// The variable's id: deleting by id removes only our own (after an expiry another run may
    /// hold a variable of the same name, with another id), in one request.
    id: String,
    /// Another run held it first: what the server holds may have changed since it was read.
    pub waited: bool,
}

impl Drop for ServerLock<'_> {
    fn drop(&mut self) {
        if let Err(err) = self.client.delete(&format!("/variables/{}", self.id)) {
            eprintln!(
                "warning: cannot delete the lock variable {} ({err}); it expires by itself",
                self.name
            );
        }
    }
}

/// The `id` of a variable as the server returns it.
fn variable_id(variable: &Value) -> Option<String> {
    variable.get("id")?.as_str().map(str::to_string)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Takes the project's lock, waiting up to `wait` for another run to release it (`cancel` ends
/// the wait). `host` names this machine in the record.
pub fn acquire<'a>(
    client: &'a PrefectClient,
    owner: &Ownership,
    host: &str,
    wait: Duration,
    cancel: &AtomicBool,
) -> Result<ServerLock<'a>> {
    let name = lock_name(owner);
    let token = uuid::Uuid::new_v4().simple().to_string();
    let deadline = Instant::now() + wait;
    let mut waited = false;
    let mut announced = false;
    loop {
        let acquired = now();
        let record = LockRecord {
            token: token.clone(),
            host: host.to_string(),
            pid: std::process::id(),
            acquired,
            expires: acquired + LOCK_TTL.as_secs(),
        };
        match client.create_variable(&name, &record.to_value(), &[LOCK_TAG]) {
            Ok(created) => {
                let Some(id) = variable_id(&created) else {
                    bail!("the server created the lock {name} but returned no id");
                };
                return Ok(ServerLock {
                    client,
                    name,
                    id,
                    waited,
                });
            }
            Err(err) if err.status() == Some(409) => {}
            Err(err) => bail!("cannot take the lock {name} on the server: {err}"),
        }
        let held = client
            .read_variable(&name)
            .map_err(|err| anyhow::anyhow!("cannot read the lock {name}: {err}"))?;
        let Some(held) = held else {
            // Released in between: try again, and read the server again after.
            waited = true;
            continue;
        };
        let record = held.get("value").and_then(LockRecord::from_value);
        match record {
            // Our own create, answered with 409 on a retry after its answer was lost.
            Some(r) if r.token == token => {
                let Some(id) = variable_id(&held) else {
                    bail!("the server returned the lock {name} without an id");
                };
                return Ok(ServerLock {
                    client,
                    name,
                    id,
                    waited,
                });
            }
            Some(r) if r.is_stale(now()) => {
                waited = true;
                eprintln!(
                    "register-flows: the lock {name} of {} expired; its run died, taking it over",
                    r.holder()
                );
                client
                    .delete_variable(&name)
                    .map_err(|err| anyhow::anyhow!("cannot delete the stale lock {name}: {err}"))?;
                continue;
            }
            None => bail!(
                "the variable {name} exists but is not a register-flows lock; delete it \
                 (`prefect variable delete {name}`) and run again"
            ),
            Some(r) => {
                if Instant::now() >= deadline || cancel.load(Ordering::SeqCst) {
                    bail!(
                        "another register-flows run of this project holds the lock {name} ({}); \
                         waited {:.0?}. If that run is dead, delete the variable \
                         (`prefect variable delete {name}`) or wait until it expires",
                        r.holder(),
                        wait
                    );
                }
                waited = true;
                if !announced {
                    eprintln!(
                        "register-flows: waiting for another run of this project to finish ({}; lock {name})",
                        r.holder()
                    );
                    announced = true;
                }
                std::thread::sleep(POLL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(project: &str) -> Ownership {
        Ownership {
            project: project.into(),
            prefect_file: "prefect.yaml".into(),
        }
    }

    #[test]
    fn records_round_trip_and_expire() {
        let r = LockRecord {
            token: "t".into(),
            host: "h".into(),
            pid: 7,
            acquired: 1_800_000_000,
            expires: 1_800_000_900,
        };
        assert_eq!(LockRecord::from_value(&r.to_value()), Some(r.clone()));
        assert!(!r.is_stale(1_800_000_899));
        assert!(r.is_stale(1_800_000_900));
        assert!(r.holder().starts_with("h pid 7 since 2027-01-15T"));
        assert_eq!(LockRecord::from_value(&json!({"token": "t"})), None);
        assert_eq!(LockRecord::from_value(&json!("text")), None);
    }

    #[test]
    fn lock_names_are_valid_variable_names_and_differ_per_prefect_file() {
        let prod = lock_name(&owner("CaptionAcc API/v2"));
        assert!(prod.starts_with("xtask-lock-captionacc-api-v2-"), "{prod}");
        assert!(prod
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'));
        let dev = lock_name(&Ownership {
            prefect_file: "prefect-dev.yaml".into(),
            ..owner("CaptionAcc API/v2")
        });
        assert_ne!(prod, dev);
        // Names that sanitize alike still get their own lock.
        assert_ne!(lock_name(&owner("a/b")), lock_name(&owner("a-b")));
        assert!(lock_name(&owner(&"x".repeat(1000))).len() <= 255);
    }
}
