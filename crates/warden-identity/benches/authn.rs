//! Cost of authenticating one request: verifying the access token (Ed25519)
//! and the DPoP proof (Ed25519, P-256 or RSA-2048, as the agent's key is),
//! signature checks plus parsing.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use warden_identity::{AccessClaims, Actor, AgentSigner, Confirmation, JwsAlg, Keypair, TokenIssuer, make_dpop_proof, verify_dpop_proof};

fn authn(c: &mut Criterion) {
    let gw = TokenIssuer::new(Keypair::generate());
    let agent = Keypair::generate();
    let claims = AccessClaims {
        iss: "https://gw".into(),
        sub: "alice@example.com".into(),
        aud: "https://gw/mcp".into(),
        exp: 2_000_000_000,
        iat: 1_795_435_200,
        nbf: 1_795_435_200,
        jti: "j".into(),
        client_id: "spiffe://td/agent/a".into(),
        scope: "crm/lookup crm/update mail/send".into(),
        act: Actor { sub: "spiffe://td/agent/a".into(), act: None },
        cnf: Some(Confirmation::key(agent.public().kid())),
        task: "t".into(),
        chain: vec![],
        fed: None,
        auth_time: None,
    };
    let token = gw.issue(&claims);
    let verifier = gw.verifier("https://gw", "https://gw/mcp");
    let proof = make_dpop_proof(&agent, "POST", "https://gw/mcp", Some(&token), 1_795_435_200);
    c.bench_function("verify access token", |b| b.iter(|| verifier.verify(black_box(&token), 1_795_435_210).unwrap()));
    c.bench_function("verify DPoP proof", |b| {
        b.iter(|| verify_dpop_proof(black_box(&proof), "POST", "https://gw/mcp", Some(&token), 1_795_435_210, 60).unwrap())
    });
    for alg in [JwsAlg::Es256, JwsAlg::Rs256] {
        let key = AgentSigner::generate(alg).unwrap();
        let proof = make_dpop_proof(&key, "POST", "https://gw/mcp", Some(&token), 1_795_435_200);
        c.bench_function(&format!("verify DPoP proof ({})", alg.as_str()), |b| {
            b.iter(|| verify_dpop_proof(black_box(&proof), "POST", "https://gw/mcp", Some(&token), 1_795_435_210, 60).unwrap())
        });
    }
}

criterion_group!(benches, authn);
criterion_main!(benches);
