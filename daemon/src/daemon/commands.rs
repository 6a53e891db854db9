//! The owner's commands from the control socket, and reloads (SIGHUP or
//! `leash reload`): a new configuration is applied whole or not at all.

use super::*;

impl Daemon {
    pub(super) async fn reload(&mut self) -> Result<(), String> {
        match load_policy(Some(&self.config_path)) {
            Ok(policy) => {
                let old = &self.engine.policy().config.daemon;
                let group_changed = policy.config.daemon.dns_nflog_group != old.dns_nflog_group;
                let new = &policy.config.daemon;
                let table_changed = new.lan != old.lan || group_changed || new.nft_table != old.nft_table;
                let old_table = (new.nft_table != old.nft_table).then(|| old.nft_table.clone());
                if new.socket != old.socket || new.state_dir != old.state_dir || new.syslog != old.syslog {
                    tracing::warn!("socket, state_dir and syslog take effect at the next start, not on reload");
                }
                if new.dns_hold != old.dns_hold || new.dns_queue != old.dns_queue || new.conntrack_buffer != old.conntrack_buffer {
                    tracing::warn!("dns_hold, dns_queue and conntrack_buffer take effect at the next start, not on reload");
                }
                let snooping = matches!(self.dns_path, nft::DnsPath::Snoop { .. });
                if snooping {
                    self.dns_path = nft::DnsPath::Snoop { group: new.dns_nflog_group };
                }
                let mut fx = Vec::new();
                let old_bypass = self.engine.bypass_layout().cloned();
                self.engine.reload(policy, now(), &mut fx);
                // The old lists are gone now: their memory goes back.
                crate::policy::lists::release_freed_memory();
                // dns_bypass turned on or off, or other DoH endpoints: the
                // sets are written with the table.
                let table_changed = table_changed || self.engine.bypass_layout() != old_bypass.as_ref();
                // Before the old table goes: its deletion is not damage.
                self.watch.set_table(&self.engine.policy().config.daemon.nft_table);
                if let Some(t) = old_table {
                    if let Err(e) = nft::apply::delete_table(&t) {
                        tracing::error!(error = %e, table = %t, "removing the old table after nft_table changed");
                    }
                }
                if table_changed {
                    // A failure is logged inside.
                    let _ = self.rebuild_table().await;
                    drop_bypass_changes(&mut fx);
                }
                if group_changed && snooping {
                    self.bind_dns().await;
                }
                self.execute(fx).await;
                // A client installed meanwhile is found.
                self.start_subscriptions();
                tracing::info!(config = %self.config_path.display(), "configuration reloaded");
                Ok(())
            }
            Err(e) => {
                let msg = format!("reload refused, running policy kept: {e}");
                tracing::error!(errors = e.0.len(), "{msg}");
                self.syslog.send(Severity::Err, &msg);
                Err(e.to_string())
            }
        }
    }

    pub(super) async fn handle(&mut self, req: Request) -> Response {
        let now = now();
        let mut fx = Vec::new();
        let resp = match req {
            Request::Status => {
                let mut s = serde_json::to_value(self.engine.status(now)).unwrap_or_default();
                if let Some(o) = s.as_object_mut() {
                    o.insert("version".into(), env!("CARGO_PKG_VERSION").into());
                    o.insert("target".into(), crate::BUILD_TARGET.into());
                    let dns = match self.dns_path {
                        nft::DnsPath::Snoop { .. } => "snooped",
                        nft::DnsPath::Hold { .. } => "held",
                        nft::DnsPath::External => "held-external",
                    };
                    o.insert("dns_answers_path".into(), dns.into());
                    o.insert("conntrack_buffer".into(), self.ct_buffer.into());
                    o.insert("conntrack_buffer_granted".into(), self.kernel.ct_buffer_granted().into());
                    o.insert("flows_unjudged_pending".into(), self.pending.len().into());
                    o.insert("flows_unjudged_dropped".into(), self.engine.counters.pending_evicted.into());
                    o.insert("neighbour_lookups_dumps_only".into(), self.lookups.dumps_only().into());
                    o.insert("syslog_queued".into(), self.syslog.pending().into());
                    o.insert("syslog_dropped".into(), self.syslog.dropped().into());
                    o.insert("state_writes".into(), self.store.writes.into());
                    o.insert("journal_appends".into(), self.journal.appends.into());
                    o.insert("journal_compactions".into(), self.journal.compactions.into());
                    o.insert("alerts_kept".into(), self.recent.len().into());
                    o.insert("alerts_kept_evicted".into(), self.recent.evicted.into());
                    o.insert("recent_alerts".into(), serde_json::to_value(self.recent.report(0, 5)).unwrap_or_default());
                    o.insert("enforce_latency".into(), serde_json::to_value(&self.timing).unwrap_or_default());
                    self.notify.status(o);
                }
                Response::ok(s)
            }
            Request::Devices => {
                let mut reports = self.engine.device_reports(now);
                for r in &mut reports {
                    r.vendor = self.vendors.of(r.mac);
                }
                Response::ok(reports)
            }
            Request::Destinations { device } => match self.engine.resolve(&device) {
                Ok(mac) => {
                    // Running flows report their bytes only when they end:
                    // read them now so that the figures are current.
                    self.read_counters(now, &mut fx).await;
                    Response::ok(self.engine.destinations.of(mac))
                }
                Err(e) => Response::err(e),
            },
            Request::Explain { device, destination } => {
                match self.engine.resolve(&device).and_then(|mac| self.engine.explain(mac, &destination, now)) {
                    Ok(x) => Response::ok(x),
                    Err(e) => Response::err(e),
                }
            }
            Request::Consent { device, selector, .. } | Request::Revoke { device, selector } if selector.parse::<Selector>().is_err() => {
                let _ = device;
                Response::err(CommandError::BadSelector(selector.parse::<Selector>().err().map(|e| e.to_string()).unwrap_or_default()))
            }
            Request::Consent { device, selector, duration } => match (self.engine.resolve(&device), consent_until(duration.as_deref(), now)) {
                (Ok(mac), Ok(until)) => {
                    let sel: Selector = selector.parse().expect("checked above");
                    let added = self.engine.consent_until(mac, sel.clone(), until, now, &mut fx);
                    // What holds now: a consent for ever is not shortened by one for a while.
                    let until = self.engine.state().consent_expiry.get(&mac).and_then(|m| m.get(&sel)).copied();
                    Response::ok(serde_json::json!({"device": mac, "consent": sel, "until": until, "changed": added}))
                }
                (Err(e), _) => Response::err(e),
                (_, Err(e)) => Response::err(e),
            },
            Request::Revoke { device, selector } => match self.engine.resolve(&device) {
                Ok(mac) => {
                    let sel: Selector = selector.parse().expect("checked above");
                    let removed = self.engine.revoke(mac, &sel, now, &mut fx);
                    if removed {
                        Response::ok(serde_json::json!({"device": mac, "revoked": sel, "changed": true}))
                    } else {
                        Response::err(format!("{mac} has no run-time consent {sel} (configured consents are changed in the configuration)"))
                    }
                }
                Err(e) => Response::err(e),
            },
            Request::Quarantine { device } => match self.engine.resolve(&device) {
                Ok(mac) => {
                    let changed = self.engine.quarantine_manual(mac, now, &mut fx);
                    Response::ok(serde_json::json!({"device": mac, "quarantined": true, "changed": changed}))
                }
                Err(e) => Response::err(e),
            },
            Request::Release { device } => match self.engine.resolve(&device) {
                Ok(mac) => {
                    let changed = self.engine.release(mac, &mut fx);
                    Response::ok(serde_json::json!({"device": mac, "quarantined": false, "changed": changed}))
                }
                Err(e) => Response::err(e),
            },
            Request::Alerts { since } => match since.as_deref().map(crate::config::units::parse_duration).transpose() {
                Ok(d) => Response::ok(self.recent.report(d.map_or(0, |d| now.saturating_sub(d.as_secs())), usize::MAX)),
                Err(e) => Response::err(format!("--since: {e}")),
            },
            Request::Lists => Response::ok(self.list_reports()),
            Request::Reload => match self.reload().await {
                Ok(()) => Response::ok(serde_json::json!({"reloaded": true, "config": self.config_path})),
                Err(e) => Response::err(e),
            },
        };
        self.execute(fx).await;
        resp
    }
}

/// `--for DURATION` as the unix second the consent expires (None: never).
fn consent_until(duration: Option<&str>, now: u64) -> Result<Option<u64>, String> {
    let Some(d) = duration else { return Ok(None) };
    let secs = crate::config::units::parse_duration(d).map_err(|e| format!("--for: {e}"))?.as_secs();
    if secs == 0 {
        return Err("--for: a consent for 0s would expire at once; omit --for to consent until revoked".into());
    }
    Ok(Some(now.saturating_add(secs)))
}

/// The `bypass_mac` changes of a reload, once the table was rebuilt with
/// the new members: deleting an element the new table never had would fail.
pub(super) fn drop_bypass_changes(fx: &mut Vec<Effect>) {
    fx.retain(|e| !matches!(e, Effect::Set(SetChange::Add { elem: Elem::BypassMac(_), .. } | SetChange::Delete(Elem::BypassMac(_)))));
}
