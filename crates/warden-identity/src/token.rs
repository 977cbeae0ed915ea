use crate::IdentityError;
use crate::agent_key::AgentKey;
use crate::jose::split_jws;
use crate::keys::{Keypair, PublicKey};
use serde::{Deserialize, Serialize};
use warden_core::ToolRef;

/// RFC 8693 `act` claim: the current actor, with the actor it acts for nested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

/// RFC 7800 `cnf`: what a token is bound to, the key of its DPoP proofs
/// (`jkt`, RFC 9449 §6) or the client certificate of its TLS connection
/// (`x5t#S256`, RFC 8705 §3.1). Exactly one of them; a `cnf` with neither
/// binds nothing and is refused where tokens are checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
    #[serde(default, rename = "x5t#S256", skip_serializing_if = "Option::is_none")]
    pub x5t_s256: Option<String>,
}

impl Confirmation {
    /// Bound to the key with RFC 7638 thumbprint `jkt` (DPoP).
    pub fn key(jkt: impl Into<String>) -> Self {
        Self { jkt: Some(jkt.into()), x5t_s256: None }
    }

    /// Bound to the certificate with SHA-256 thumbprint `x5t` (mTLS).
    pub fn certificate(x5t: impl Into<String>) -> Self {
        Self { jkt: None, x5t_s256: Some(x5t.into()) }
    }
}

/// Claims of a Warden access token (RFC 9068 profile): `sub` is the human
/// owner, `act.sub` the agent, `cnf.jkt` the DPoP key (absent from a
/// bearer token), `scope` the tools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    pub act: Actor,
    /// The key the token is bound to; `None` for a bearer token, which only
    /// an agent whose registered binding is `bearer` may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    /// Task the grant is for; revoking the task revokes every token of it.
    pub task: String,
    /// Token ids this one was derived from, root first (empty for a root grant).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
    /// Granted on a workload credential of this issuer (`jwt-bearer`):
    /// the token is bound to the key the workload proved for the session,
    /// not to the agent's registered key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fed: Option<String>,
    /// When the human the token acts for signed in (RFC 9068 §2.2.1): set
    /// only on tokens of an interactive sign-in (and tokens exchanged from
    /// them), whose `sub` is then that human rather than the agent's owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
}

impl AccessClaims {
    /// The human the agent acts for, signed in at the IdP, if any.
    pub fn human(&self) -> Option<&str> {
        self.auth_time.map(|_| self.sub.as_str())
    }

    /// The agent making the call.
    pub fn agent(&self) -> &str {
        &self.act.sub
    }

    /// Actor chain, current actor first.
    pub fn delegation(&self) -> Vec<&str> {
        let mut out = vec![self.act.sub.as_str()];
        let mut cur = &self.act.act;
        while let Some(a) = cur {
            out.push(a.sub.as_str());
            cur = &a.act;
        }
        out
    }

    /// The root of the actor chain: the agent every other one in it acts for.
    pub fn lineage_root(&self) -> &str {
        let mut cur = &self.act;
        while let Some(a) = &cur.act {
            cur = a;
        }
        &cur.sub
    }

    /// Tools in scope. Unparseable entries are ignored (they grant nothing).
    pub fn tools(&self) -> Vec<ToolRef> {
        self.scope.split_whitespace().filter_map(|s| s.parse().ok()).collect()
    }

    /// Expiry, not-before and issue time (5 s leeway for clock skew on
    /// `nbf` and `iat`: a token from the future was not issued by a sane
    /// issuer, and would outlive a revocation cut-off taken now).
    pub fn check_lifetime(&self, now: i64) -> Result<(), IdentityError> {
        if self.exp <= now {
            return Err(IdentityError::Expired);
        }
        if self.nbf > now + 5 || self.iat > now + 5 {
            return Err(IdentityError::NotYetValid);
        }
        Ok(())
    }

    pub fn in_scope(&self, tool: &ToolRef) -> bool {
        self.scope.split_whitespace().filter_map(|s| s.parse::<ToolRef>().ok()).any(|s| s.covers(tool))
    }
}

/// Signs access tokens with the gateway key.
#[derive(Debug, Clone)]
pub struct TokenIssuer {
    key: Keypair,
}

impl TokenIssuer {
    pub fn new(key: Keypair) -> Self {
        Self { key }
    }

    pub fn public_key(&self) -> PublicKey {
        self.key.public()
    }

    pub fn issue(&self, claims: &AccessClaims) -> String {
        let mut header = serde_json::Map::new();
        header.insert("typ".into(), "at+jwt".into());
        header.insert("kid".into(), self.key.public().kid().into());
        crate::sign_jws(&self.key, header, claims)
    }

    pub fn verifier(&self, issuer: &str, audience: &str) -> TokenVerifier {
        TokenVerifier { key: self.key.public(), issuer: issuer.into(), audience: audience.into() }
    }
}

/// Verifies access tokens for one resource (audience).
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    key: PublicKey,
    issuer: String,
    audience: String,
}

impl TokenVerifier {
    pub fn new(key: PublicKey, issuer: &str, audience: &str) -> Self {
        Self { key, issuer: issuer.into(), audience: audience.into() }
    }

    /// Signature, type, issuer, audience and lifetime. Revocation and the DPoP
    /// binding are checked by the caller, which holds that state.
    pub fn verify(&self, token: &str, now: i64) -> Result<AccessClaims, IdentityError> {
        let jws = split_jws(token)?;
        jws.expect_typ("at+jwt")?;
        let c: AccessClaims = jws.verify(&AgentKey::Ed25519(self.key))?;
        if c.iss != self.issuer {
            return Err(IdentityError::Issuer(c.iss));
        }
        if c.aud != self.audience {
            return Err(IdentityError::Audience { expected: self.audience.clone(), found: c.aud });
        }
        c.check_lifetime(now)?;
        Ok(c)
    }
}

/// The sub-agent a token is being exchanged for.
#[derive(Debug, Clone, Copy)]
pub struct SubAgent<'a> {
    pub id: &'a str,
    /// The sub-agent's own registered allow-list.
    pub allowed: &'a [ToolRef],
    /// What the new token is bound to: the key its DPoP proof showed or the
    /// certificate of its connection; `None` for a bearer token (a
    /// sub-agent whose binding allows it).
    pub cnf: Option<&'a Confirmation>,
}

/// RFC 8693 attenuation: derive a sub-agent token from `parent`. The child
/// gets at most the parent's tools (further limited by its own allow-list and
/// the request), at most the parent's remaining lifetime, the same task and
/// owner, and an `act` chain naming both.
pub fn attenuate(
    parent: &AccessClaims,
    child: &SubAgent<'_>,
    requested: Option<&[ToolRef]>,
    ttl: i64,
    now: i64,
    jti: String,
) -> Result<AccessClaims, IdentityError> {
    let SubAgent { id: child_agent, allowed: child_allowed, cnf: child_cnf } = *child;
    let parent_tools = parent.tools();
    let granted_by_both = |t: &ToolRef| parent_tools.iter().any(|p| p.covers(t)) && child_allowed.iter().any(|a| a.covers(t));
    let scope: Vec<ToolRef> = match requested {
        Some(req) => {
            if let Some(bad) = req.iter().find(|t| !granted_by_both(t)) {
                return Err(IdentityError::Scope(bad.to_string()));
            }
            req.to_vec()
        }
        // No explicit request: the intersection of the two lists, wildcards
        // narrowed to whichever side is more specific.
        None => {
            let mut out: Vec<ToolRef> = Vec::new();
            for p in &parent_tools {
                for a in child_allowed {
                    let t = if p.covers(a) {
                        a
                    } else if a.covers(p) {
                        p
                    } else {
                        continue;
                    };
                    if !out.contains(t) {
                        out.push(t.clone());
                    }
                }
            }
            out
        }
    };
    if scope.is_empty() {
        return Err(IdentityError::Scope("no tool is granted to both the parent token and the sub-agent".into()));
    }
    let mut chain = parent.chain.clone();
    chain.push(parent.jti.clone());
    Ok(AccessClaims {
        iss: parent.iss.clone(),
        sub: parent.sub.clone(),
        aud: parent.aud.clone(),
        exp: parent.exp.min(now + ttl),
        iat: now,
        nbf: now,
        jti,
        client_id: child_agent.into(),
        scope: scope.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
        act: Actor { sub: child_agent.into(), act: Some(Box::new(parent.act.clone())) },
        cnf: child_cnf.cloned(),
        task: parent.task.clone(),
        chain,
        fed: None,
        // A sub-agent acts for the same human as its parent.
        auth_time: parent.auth_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RevocationSet;

    fn claims(now: i64) -> AccessClaims {
        AccessClaims {
            iss: "https://gw".into(),
            sub: "alice".into(),
            aud: "https://gw/mcp".into(),
            exp: now + 300,
            iat: now,
            nbf: now,
            jti: "t1".into(),
            client_id: "spiffe://td/agent/a".into(),
            scope: "crm/lookup db/*".into(),
            act: Actor { sub: "spiffe://td/agent/a".into(), act: None },
            cnf: Some(Confirmation::key("k")),
            task: "task-1".into(),
            chain: vec![],
            fed: None,
            auth_time: None,
        }
    }

    #[test]
    fn issue_verify_and_reject_forgeries() {
        let issuer = TokenIssuer::new(Keypair::generate());
        let v = issuer.verifier("https://gw", "https://gw/mcp");
        let tok = issuer.issue(&claims(100));
        assert_eq!(v.verify(&tok, 150).unwrap(), claims(100));
        assert_eq!(v.verify(&tok, 400), Err(IdentityError::Expired));
        let other = TokenIssuer::new(Keypair::generate()).issue(&claims(100));
        assert_eq!(v.verify(&other, 150), Err(IdentityError::Signature));
        let wrong_aud = issuer.verifier("https://gw", "https://elsewhere/mcp");
        assert!(matches!(wrong_aud.verify(&tok, 150), Err(IdentityError::Audience { .. })));
        // alg=none / algorithm confusion is refused before signature checks.
        let none = format!("{}.{}.", crate::b64url(br#"{"alg":"none","typ":"at+jwt"}"#), tok.split('.').nth(1).unwrap());
        assert!(matches!(v.verify(&none, 150), Err(IdentityError::Algorithm(_))));
    }

    #[test]
    fn a_token_issued_in_the_future_is_not_yet_valid() {
        let issuer = TokenIssuer::new(Keypair::generate());
        let v = issuer.verifier("https://gw", "https://gw/mcp");
        let mut c = claims(100);
        c.iat = 200;
        let tok = issuer.issue(&c);
        assert_eq!(v.verify(&tok, 150), Err(IdentityError::NotYetValid));
        assert!(v.verify(&tok, 196).is_ok(), "within the clock-skew leeway");
    }

    #[test]
    fn only_a_sign_in_names_a_human_and_its_sub_agents_act_for_the_same_one() {
        let own = claims(100);
        assert_eq!(own.human(), None, "an agent's own credential: sub is its owner, no human signed in");
        let signed_in = AccessClaims { auth_time: Some(90), ..claims(100) };
        assert_eq!(signed_in.human(), Some("alice"));
        let allowed: Vec<ToolRef> = vec!["db/query".parse().unwrap()];
        let child = SubAgent { id: "spiffe://td/agent/b", allowed: &allowed, cnf: None };
        let c = attenuate(&signed_in, &child, None, 600, 200, "t2".into()).unwrap();
        assert_eq!(c.human(), Some("alice"));
        assert_eq!(attenuate(&own, &child, None, 600, 200, "t3".into()).unwrap().human(), None);
    }

    #[test]
    fn attenuation_never_widens() {
        let parent = claims(100);
        let child_allowed: Vec<ToolRef> = vec!["db/query".parse().unwrap(), "email/send".parse().unwrap()];
        let kb = Confirmation::key("kb");
        let child = SubAgent { id: "spiffe://td/agent/b", allowed: &child_allowed, cnf: Some(&kb) };
        let c = attenuate(&parent, &child, None, 600, 200, "t2".into()).unwrap();
        assert_eq!(c.scope, "db/query");
        assert_eq!(c.exp, parent.exp, "TTL capped at the parent's");
        assert_eq!(c.delegation(), vec!["spiffe://td/agent/b", "spiffe://td/agent/a"]);
        assert_eq!(c.lineage_root(), "spiffe://td/agent/a");
        assert_eq!(parent.lineage_root(), "spiffe://td/agent/a");
        assert_eq!(c.chain, vec!["t1".to_string()]);
        let req = vec!["email/send".parse().unwrap()];
        assert!(matches!(attenuate(&parent, &child, Some(&req), 60, 200, "t3".into()), Err(IdentityError::Scope(_))));

        let mut rev = RevocationSet::default();
        rev.token_ids.insert("t1".into());
        assert!(rev.check(&c).is_err(), "revoking the parent cascades");
        let mut rev = RevocationSet::default();
        rev.agents_before.insert("spiffe://td/agent/a".into(), 250);
        assert!(rev.check(&c).is_err(), "revoking the parent agent cascades");
        rev.agents_before.insert("spiffe://td/agent/a".into(), 150);
        assert!(rev.check(&c).is_ok());
    }
}
