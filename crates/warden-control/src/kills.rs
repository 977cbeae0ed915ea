//! Kill switches: engaging one (in force in this process at once when it
//! runs a gateway) and lifting one.

use crate::{Actor, ControlError, ControlPlane, Why, required};
use warden_core::EventKind;
use warden_core::{Kill, KillScope};

impl ControlPlane {
    /// Engage a kill switch. Agent kills must name a registered agent; the
    /// gateway in this process enforces it before this returns (and audits
    /// when it took effect), a standalone control plane audits the
    /// engagement and gateways enforce it at their next refresh.
    pub async fn engage_kill(&self, actor: &Actor, scope: KillScope, target: &str, reason: &str) -> Result<Kill, ControlError> {
        let reason = required(reason, Why::EngageKill)?;
        let target = match scope {
            KillScope::Global => String::new(),
            KillScope::Agent => {
                let id = self.agent_id(target)?;
                self.store.get_agent(&id).await?;
                id.to_string()
            }
            KillScope::Tool => {
                let t: warden_core::ToolRef = target.parse()?;
                if t.is_wildcard() {
                    return Err(ControlError::WildcardKill { server: t.server });
                }
                t.to_string()
            }
            KillScope::Server => {
                warden_core::validate_name(target)?;
                target.to_string()
            }
            KillScope::Owner if target.trim().is_empty() => return Err(ControlError::OwnerRequired),
            KillScope::Owner => target.to_string(),
        };
        let kill = Kill { id: 0, scope, target, reason: reason.to_string(), by: actor.subject.clone(), at_ms: warden_core::clock::now_ms() };
        if let Some(gw) = &self.gateway {
            return Ok(gw.contain(kill).await?);
        }
        let k = self.store.engage_kill(&kill).await?.kill;
        // The switch names who engaged it (`by`), whichever door they used,
        // as the gateway's own record of an engagement does.
        let mut ev = k.audit_event(EventKind::Containment);
        ev.reason = Some(k.describe());
        self.audit.record(ev).await?;
        Ok(k)
    }

    /// Lift a kill switch (an agent kill re-activates the agent).
    pub async fn lift_kill(&self, actor: &Actor, id: i64, reason: &str) -> Result<Kill, ControlError> {
        let reason = required(reason, Why::LiftKill)?;
        let k = self.store.lift_kill(id, &actor.subject, warden_core::clock::now_ms()).await?;
        self.settle().await;
        let mut ev = k.audit_event(EventKind::ContainmentLifted);
        ev.reason = Some(reason.to_string());
        let action = ev.action.clone().unwrap_or_default();
        self.record(actor, EventKind::ContainmentLifted, &action, ev).await?;
        Ok(k)
    }
}
