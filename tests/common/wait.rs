//! Waiting for an event: look for it again and again until it is seen or a
//! deadline passes, never a fixed sleep.
#![allow(dead_code)]

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// The pause between two looks.
const PAUSE: Duration = Duration::from_millis(20);

/// Calls `look` until it answers `Ok(value)`, and returns the value; panics
/// once `within` has passed without it, with what `look` last saw
/// (`Err(seen)`).
pub async fn eventually<T, E, F, Fut>(within: Duration, mut look: F) -> T
where
    E: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let until = Instant::now() + within;
    loop {
        match look().await {
            Ok(value) => return value,
            Err(seen) if Instant::now() >= until => {
                panic!("not within {within:?}; last seen: {seen:?}")
            }
            Err(_) => tokio::time::sleep(PAUSE).await,
        }
    }
}

/// `Ok(())` when `done`, else `Err(seen)`: a yes-or-no look for
/// [`eventually`] that still tells what it saw.
pub fn seen<E>(done: bool, seen: E) -> Result<(), E> {
    if done {
        Ok(())
    } else {
        Err(seen)
    }
}
