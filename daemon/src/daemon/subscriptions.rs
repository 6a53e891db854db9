//! Subscribed lists in the running daemon: downloads started from the
//! housekeeping tick, their outcomes swapped into the policy whole.

use super::*;

impl Daemon {
    /// Finds the download client (at start and on reload) and schedules
    /// the subscribed lists.
    pub(super) fn start_subscriptions(&mut self) {
        let subscribed = self.engine.policy().config.lists.values().any(|l| !l.urls.is_empty());
        self.fetch_client = fetch::Client::find();
        match &self.fetch_client {
            Some(c) => tracing::debug!(client = c.name(), "lists by URL are fetched with this client"),
            None if subscribed => {
                tracing::error!("no download client on PATH (uclient-fetch, curl or wget): lists by URL keep their cached copies");
                self.syslog.send(Severity::Err, "no download client (uclient-fetch, curl or wget): lists by URL are not refreshed");
            }
            None => {}
        }
        self.sync_subscriptions();
    }

    /// The schedule follows the configuration.
    pub(super) fn sync_subscriptions(&mut self) {
        let lists = &self.engine.policy().config.lists;
        let subscribed = lists.values().filter(|l| !l.urls.is_empty()).map(|l| (l.name.as_str(), l.urls.as_slice(), l.refresh));
        self.schedule.sync(subscribed, now());
    }

    /// Starts the downloads that are due (a thread each, bounded).
    pub(super) fn start_fetches(&mut self, now: u64) {
        for name in self.schedule.due(now, fetch::MAX_RUNNING) {
            let policy = self.engine.policy();
            let Some(def) = policy.config.lists.get(&name) else { continue };
            let job = fetch::Job {
                def: def.clone(),
                cache: crate::policy::lists::cache_path(&policy.config.daemon.state_dir, &name),
                tmp_dir: std::env::temp_dir(),
                client: self.fetch_client.clone(),
            };
            tracing::debug!(list = %name, "fetching list");
            fetch::spawn(job, self.fetched.clone());
        }
    }

    /// A download finished: a good one replaces the list in the running
    /// policy (re-judging what it covers, like a reload); a bad one keeps
    /// the last good copy and is recorded.
    pub(super) async fn on_fetched(&mut self, outcome: fetch::Outcome) {
        let now = now();
        let name = outcome.def.name.clone();
        if self.engine.policy().config.lists.get(&name) != Some(&outcome.def) {
            // Reloaded meanwhile: this download is of a list that no longer is.
            self.schedule.stale(&name);
            return;
        }
        match outcome.result {
            Ok(fetch::Fetched { list, changed }) => {
                self.schedule.done(&name, Ok(()), now);
                let entries = list.len();
                let unchanged = !changed && self.engine.policy().lists.get(&name).is_some_and(|l| **l == list);
                if unchanged {
                    tracing::debug!(list = %name, entries, "list refreshed, unchanged");
                    return;
                }
                let Some(policy) = self.engine.policy().with_list(list) else { return };
                let mut fx = Vec::new();
                let old_bypass = self.engine.bypass_layout().cloned();
                self.engine.reload(policy, now, &mut fx);
                crate::policy::lists::release_freed_memory();
                // A list of DoH endpoints changed: its interval set is
                // written with the table.
                if self.engine.bypass_layout() != old_bypass.as_ref() {
                    let _ = self.rebuild_table().await;
                    super::commands::drop_bypass_changes(&mut fx);
                }
                self.execute(fx).await;
                tracing::info!(list = %name, entries, "list refreshed");
            }
            Err(e) => {
                let msg = e.to_string();
                tracing::warn!(list = %name, error = %msg, "list download failed; the last good copy stays in force");
                self.schedule.done(&name, Err(msg), now);
            }
        }
    }

    /// What `leash lists` answers: every list with its sources, entries and
    /// (for subscribed ones) refreshes.
    pub(super) fn list_reports(&self) -> Vec<ListReport> {
        let policy = self.engine.policy();
        policy
            .config
            .lists
            .values()
            .map(|def| {
                let l = policy.lists.get(&def.name);
                let status = self.schedule.status(&def.name);
                let mut sources: Vec<String> = def.files.iter().map(|f| f.display().to_string()).collect();
                sources.extend(def.urls.iter().cloned());
                if sources.is_empty() && !def.selectors.is_empty() {
                    sources.push("selectors".into());
                }
                ListReport {
                    name: def.name.clone(),
                    source: sources.join(" "),
                    files: def.files.clone(),
                    urls: def.urls.clone(),
                    domains: l.map_or(0, |l| l.domains.len()),
                    nets: l.map_or(0, |l| l.nets.len()),
                    selectors: l.map_or(0, |l| l.selectors.len()),
                    entries: l.map_or(0, |l| l.len()),
                    bad_lines: l.map_or(0, |l| l.bad_lines),
                    refresh: (!def.urls.is_empty()).then_some(def.refresh.as_secs()),
                    fetching: self.schedule.running(&def.name),
                    last_refresh: status.and_then(|s| s.last_refresh),
                    last_attempt: status.and_then(|s| s.last_attempt),
                    last_error: status.and_then(|s| s.last_error.clone()),
                    next_refresh: status.map(|s| s.next_refresh),
                    failures: status.map_or(0, |s| s.failures),
                }
            })
            .collect()
    }
}

/// One row of `leash lists`.
#[derive(Debug, serde::Serialize)]
pub(super) struct ListReport {
    name: String,
    /// Files and URLs, space-separated (`selectors` when it has only those).
    source: String,
    files: Vec<PathBuf>,
    urls: Vec<String>,
    domains: usize,
    nets: usize,
    /// Selectors that are neither names nor nets (`country:`, `asn:`, …).
    selectors: usize,
    entries: usize,
    bad_lines: usize,
    /// Seconds between downloads; none for lists without URLs.
    refresh: Option<u64>,
    fetching: bool,
    /// Unix seconds of the last download used (this run; the cached copy
    /// serves until then).
    last_refresh: Option<u64>,
    last_attempt: Option<u64>,
    /// Why the last download was not used; none after a good one.
    last_error: Option<String>,
    next_refresh: Option<u64>,
    /// Failed downloads since the last good one.
    failures: u32,
}
