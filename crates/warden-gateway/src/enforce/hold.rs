//! Holding a call for a human's approval: one granted earlier for this
//! exact call (the agent retried after a hold ran out), or a new request
//! held until it is decided, expires (timeout = deny) or the hold ends; then
//! the call is authorized again as it is released.

use super::{Ask, Assessed, Inspection, MonitorView, Permit, Pipeline, Refusal, Subject, Target, facts};
use std::time::{Duration, Instant};
use warden_core::clock::now_ms;
use warden_core::clock::now_secs;
use warden_core::{Approval, ApprovalStatus, Decision, EventKind, TargetKind, Verdict};
use warden_inspect::{Method, Rule};
use warden_policy::PolicyBundle;

/// How often a held call looks for its approval decision.
const APPROVAL_POLL: Duration = Duration::from_millis(50);

impl Pipeline<'_> {
    /// Get a human's approval for this call and authorize it again; the
    /// permit carries the approval, spent when the call is admitted.
    pub(crate) async fn hold(
        &mut self,
        target: &Target,
        found: &Inspection,
        a: &Assessed,
        decided_by: &PolicyBundle,
        reason: &str,
        policies: &[String],
    ) -> Result<Permit, Refusal> {
        let id = self.approval(target, a, decided_by, reason, policies).await?;
        self.trail.add_policies([format!("approval#{id}")]);
        match self.reauthorize(target, found, a, policies) {
            Ok(permit) => Ok(Permit { approval: Some(id), ..permit }),
            Err((why, by)) => {
                self.trail.add_policies(by);
                Err(Refusal::ApprovalNotUsed { approval: id, why })
            }
        }
    }

    /// The approval id (not yet used), or why there is none.
    async fn approval(&mut self, target: &Target, a: &Assessed, decided_by: &PolicyBundle, reason: &str, policies: &[String]) -> Result<String, Refusal> {
        let gw = self.gw;
        let cfg = &gw.config.approvals;
        let store_err = |e: warden_store::StoreError| Refusal::ApprovalsUnavailable(format!("approval store unavailable, so the call was not executed: {e}"));
        let hash = self.trail.args_sha256.clone().unwrap_or_default();
        let agent = self.auth.claims.agent();
        let tref = &target.tool.tool;
        if let Some(id) = gw.store.approved_for(agent, tref, &hash, now_ms()).await.map_err(store_err)? {
            self.trail.note(format!("approved earlier (approval {id}); this is the repeated call it covers"));
            return Ok(id);
        }
        // The same call coming back for the approval it was told of: the
        // same agent, tool and arguments, still pending.
        let resumed = match self.resumes.take() {
            Some(id) => gw
                .store
                .get_approval(&id)
                .await
                .ok()
                .filter(|p| p.status == ApprovalStatus::Pending && p.agent == agent && p.tool == *tref && p.args_sha256 == hash && p.expires_ms > now_ms()),
            None => None,
        };
        let id = match resumed {
            Some(p) => {
                self.trail.note(format!("waiting again on approval {}", p.id));
                p.id
            }
            None => self.request_approval(target, a, decided_by, reason, policies, hash).await?,
        };
        let hold_until = Instant::now() + Duration::from_secs(cfg.hold_secs);
        loop {
            tokio::time::sleep(APPROVAL_POLL).await;
            let cur = gw.store.get_approval(&id).await.map_err(store_err)?;
            match cur.status {
                ApprovalStatus::Approved => {
                    self.trail.note(format!("approved by {} (approval {id})", cur.approvers.join(" and ")));
                    return Ok(id);
                }
                ApprovalStatus::Denied => {
                    let by = cur.decided_by.unwrap_or_default();
                    let why = cur.decision_reason.filter(|r| !r.is_empty()).map(|r| format!(": {r}")).unwrap_or_default();
                    return Err(Refusal::ApprovalRefused(format!("denied: approval {id} was refused by {by}{why}")));
                }
                ApprovalStatus::Pending if now_ms() > cur.expires_ms => {
                    let _ = gw.store.expire_approval(&id).await;
                    return Err(Refusal::ApprovalRefused(format!("denied: no decision on approval {id} before it expired (timeout = deny)")));
                }
                // A stopping gateway answers held calls now (they stay
                // pending) instead of holding its shutdown.
                ApprovalStatus::Pending if Instant::now() >= hold_until || gw.shutting_down() => {
                    let expires_in_secs = (cur.expires_ms - now_ms()).max(0) / 1000;
                    return Err(Refusal::Pending { approval: id, reason: reason.to_string(), expires_in_secs });
                }
                ApprovalStatus::Pending => {}
                ApprovalStatus::Expired | ApprovalStatus::Used => {
                    return Err(Refusal::ApprovalRefused(format!("denied: approval {id} is {}", cur.status)));
                }
            }
        }
    }

    /// Ask for a new approval of this call: stored, recorded, announced.
    async fn request_approval(
        &mut self,
        target: &Target,
        a: &Assessed,
        decided_by: &PolicyBundle,
        reason: &str,
        policies: &[String],
        hash: String,
    ) -> Result<String, Refusal> {
        let gw = self.gw;
        let store_err = |e: warden_store::StoreError| Refusal::ApprovalsUnavailable(format!("approval store unavailable, so the call was not executed: {e}"));
        let agent = self.auth.claims.agent();
        let tref = &target.tool.tool;
        let cfg = &gw.config.approvals;
        // Approvers see the personal data they decide on (the destination);
        // everyone else (audit, webhooks, viewers) a keyed fingerprint of it.
        // No human needs a secret to decide, so secrets are masked for all.
        let rule = |class: &str, method| Rule { class: class.into(), method };
        let mut shown = target.args.clone();
        gw.redactor.redact_json(&gw.inspector, &mut shown, &[rule("secrets", Method::Mask)]);
        let mut masked = shown.clone();
        gw.redactor.redact_json(&gw.inspector, &mut masked, &[rule("pii", Method::Fingerprint)]);
        let now = now_ms();
        let held = Approval {
            id: super::correlation_id(),
            agent: agent.to_string(),
            owner: self.auth.agent.owner.clone(),
            task: self.auth.claims.task.clone(),
            tool: tref.clone(),
            args_sha256: hash,
            args_redacted: masked,
            args: Some(shown),
            reason: reason.to_string(),
            policies: policies.to_vec(),
            risk: a.seen.risk,
            required: decided_by.approvers_required(policies),
            approvers: Vec::new(),
            status: ApprovalStatus::Pending,
            decided_by: None,
            decision_reason: None,
            created_ms: now,
            expires_ms: now + cfg.expire_secs as i64 * 1000,
        };
        gw.store.insert_approval(&held).await.map_err(store_err)?;
        let requested = format!("approval {} requested ({} approver(s)): {reason}", held.id, held.required);
        let req = self.trail.interim(EventKind::ApprovalRequested, Verdict::NeedsApproval, Some(requested));
        gw.audit.record(req).await.map_err(|e| Refusal::ApprovalsUnavailable(e.to_string()))?;
        gw.metrics.observe_approval_request();
        gw.notify_approval(&held);
        Ok(held.id)
    }

    /// Authorize an approved call again as it is released: the hold lasted
    /// up to minutes, during which the agent may have been suspended,
    /// revoked or contained, its token revoked or expired, the tool disabled
    /// or reclassified, its scope narrowed, the policy changed or the
    /// agent's risk grown. The approval lifts only the forbids it was asked
    /// for (`approved`); whatever else the current policy says stands.
    /// Returns the permit to forward under, or why not and the policies
    /// that say so.
    fn reauthorize(&self, target: &Target, found: &Inspection, a: &Assessed, approved: &[String]) -> Result<Permit, (String, Vec<String>)> {
        let gw = self.gw;
        let now = now_secs();
        self.auth.claims.check_lifetime(now).map_err(|e| (format!("the token is no longer valid ({e}); repeat the call with a fresh token"), Vec::new()))?;
        let auth = gw.authorize_claims(self.auth.claims.clone()).map_err(|f| (f.description, Vec::new()))?;
        let snap = gw.snapshot();
        let tref = &target.tool.tool;
        let tool = match target.kind {
            TargetKind::Tool => {
                snap.tools.get(tref).filter(|t| t.is_callable()).cloned().ok_or_else(|| (super::unavailable_reason(snap.tools.get(tref), tref), Vec::new()))?
            }
            kind => gw
                .upstream(&tref.server)
                .and_then(|u| super::item_tool(u, kind))
                .ok_or_else(|| (format!("server {} is no longer configured", tref.server), Vec::new()))?,
        };
        if !auth.grants(tref) {
            return Err((format!("tool {tref} is no longer within the agent's registered tools"), Vec::new()));
        }
        let policy = gw.policy();
        let mon = MonitorView { risk: i64::from(gw.monitor.risk(auth.claims.agent(), now_ms()).max(a.seen.risk)), ..MonitorView::from(&a.seen) };
        match policy.decide(&facts(&auth, Subject { tool: &tool, kind: target.kind, name: &target.name }, &target.args, Ask::Call(&found.findings), now, &mon))
        {
            Decision::Allow { obligations, .. } => Ok(Permit { policy, obligations, approval: None }),
            Decision::NeedsApproval { policies, obligations, .. } if policies.iter().all(|p| approved.contains(p)) => {
                Ok(Permit { policy, obligations, approval: None })
            }
            Decision::NeedsApproval { reason, policies, .. } => Err((format!("it now also needs approval for: {reason}"), policies)),
            Decision::Deny { reason, policies } => Err((reason, policies)),
        }
    }
}
