//! Calls in a loop while a test does something to the service's
//! surroundings (stops a replica, restarts a pooler).
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use affinity::proto;
use tonic::Code;

use super::server::{authed, code, Tenant, TestServer};

/// Callers asking ListMembers of a tenant's organization in a loop (a read
/// no cache answers), each call's code kept in order, until stopped.
pub struct MembersLoad {
    codes: Arc<Mutex<Vec<Code>>>,
    stop: Arc<AtomicBool>,
    tasks: tokio::task::JoinSet<()>,
}

impl MembersLoad {
    /// `callers` clients of `s`, each call with a 5 s deadline.
    pub fn start(s: &TestServer, t: &Tenant, callers: usize) -> MembersLoad {
        let codes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..callers {
            let (mut orgs, codes, stop, t) = (s.orgs(), codes.clone(), stop.clone(), t.clone());
            tasks.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let mut req = authed(
                        proto::ListMembersRequest {
                            organization_id: t.org.to_string(),
                        },
                        &t.token,
                    );
                    req.set_timeout(Duration::from_secs(5));
                    let got = code(orgs.list_members(req).await);
                    codes.lock().unwrap_or_else(|e| e.into_inner()).push(got);
                }
            });
        }
        MembersLoad { codes, stop, tasks }
    }

    /// The codes so far.
    pub fn codes(&self) -> Vec<Code> {
        self.codes.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops the callers: every code.
    pub async fn stop(mut self) -> Vec<Code> {
        self.stop.store(true, Ordering::Relaxed);
        while self.tasks.join_next().await.is_some() {}
        self.codes()
    }
}
