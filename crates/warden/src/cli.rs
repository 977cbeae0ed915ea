use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "warden", version, about = "Zero-trust gateway and control plane for AI agents")]
pub struct Cli {
    /// Configuration file.
    #[arg(long, global = true, env = "WARDEN_CONFIG", default_value = "warden.toml")]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Whether `--config`/`WARDEN_CONFIG` named a file (then it must exist).
    pub fn config_explicit(&self) -> bool {
        self.config.as_path() != std::path::Path::new("warden.toml")
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway and authorization server.
    Serve,
    /// Write a starter warden.toml and policy directory.
    Init {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Register and manage agents.
    #[command(subcommand)]
    Agent(AgentCmd),
    /// Classify, approve and disable upstream tools.
    #[command(subcommand)]
    Tool(ToolCmd),
    /// Revoke tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Validate and test Cedar policies.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Read, query, verify and export the audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Scan text with the inspection detectors, and measure their accuracy.
    #[command(subcommand)]
    Inspect(InspectCmd),
    /// Kill switches: stop an agent, an owner's agents, a server, a tool, or
    /// everything; list and lift them.
    #[command(subcommand)]
    Kill(KillCmd),
    /// Operators of the admin API and dashboard, with their roles.
    #[command(subcommand)]
    Operator(OperatorCmd),
    /// Calls held for human approval: list, inspect, approve or deny.
    #[command(subcommand)]
    Approvals(ApprovalsCmd),
    /// What the monitor has learned: baselines, risk, learning status.
    #[command(subcommand)]
    Monitor(MonitorCmd),
    /// Configuration for other systems, generated from the registry.
    #[command(subcommand)]
    Export(ExportCmd),
    /// Compliance evidence (JSON and HTML): inventory, policies and their
    /// tests, decisions, violations, containments, audit verification, mapped
    /// to NIST SP 800-207 and the OWASP Top 10 for LLM applications.
    Report {
        /// Directory for report.json and report.html.
        #[arg(long, default_value = "warden-report")]
        out: PathBuf,
    },
    /// Connect an MCP host (Claude, VS Code, Cursor, an SDK client) to the
    /// gateway as one registered agent: MCP on stdio (or, with --listen,
    /// streamable HTTP on loopback), relayed with the agent's task tokens
    /// and a DPoP proof for every request. The host needs no OAuth support.
    Connect(ConnectArgs),
    /// Run the end-to-end demo on a fresh SQLite data directory.
    Demo {
        /// Directory for the demo's data (default: a new temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The built-in demo MCP server (stdio); launched by the gateway.
    #[command(hide = true)]
    DemoServer,
    /// Confine this process as `--spec` (JSON `[upstream.sandbox]`) says,
    /// then exec COMMAND; launched by the gateway for sandboxed servers.
    #[command(hide = true)]
    SandboxExec {
        #[arg(long)]
        spec: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentCmd {
    /// Register an agent with its public key (or generate a key pair).
    Register(RegisterArgs),
    List,
    Show {
        agent: String,
    },
    /// Suspend: every token it holds stops working at once.
    Suspend {
        agent: String,
        #[arg(long, default_value = "suspended by an operator")]
        reason: String,
    },
    Resume {
        agent: String,
    },
    /// Revoke for good.
    Revoke {
        agent: String,
        #[arg(long, default_value = "revoked by an operator")]
        reason: String,
    },
    /// Set the autonomy level (0-3), e.g. a promotion `agent show` recommends.
    Autonomy {
        agent: String,
        level: i64,
        #[arg(long)]
        reason: String,
    },
    /// Replace the agent's key; tokens bound to the old key stop working.
    RotateKey {
        agent: String,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Issue a short-lived X.509-SVID (one URI SAN, spiffe://TD/agent/NAME)
    /// from Warden's CA, for mutual TLS with the gateway (`[tls]`).
    IssueCert {
        agent: String,
        /// Directory for NAME.crt.pem (the certificate and the CA) and NAME.key.pem (mode 0600).
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Lifetime in hours (at most 24).
        #[arg(long, default_value_t = 1)]
        hours: i64,
    },
    /// Print Warden's CA certificate: the trust bundle clients verify the
    /// gateway with, and other SPIFFE systems trust Warden's agents by.
    TrustBundle,
    /// How the agent's tokens are bound: to its key by DPoP (the default),
    /// to its X.509-SVID by mutual TLS, or not at all (bearer, for clients
    /// that cannot sign DPoP proofs, such as the MCP SDKs). Tokens the new
    /// binding does not allow stop working at once.
    SetBinding {
        agent: String,
        binding: BindingArg,
        #[arg(long, default_value = "changed by an operator")]
        reason: String,
    },
}

/// How an agent's tokens are bound (`warden_core::TokenBinding`).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum BindingArg {
    /// Every token bound to the agent's key by DPoP (RFC 9449).
    Dpop,
    /// Unbound bearer tokens allowed (RFC 6750); a DPoP proof still binds.
    Bearer,
    /// Every token bound to the agent's X.509-SVID on a mutual-TLS connection (RFC 8705).
    Mtls,
}

/// The type of a generated key.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KeyAlgArg {
    /// Ed25519.
    Eddsa,
    /// P-256.
    Es256,
    /// RSA, 2048 bits.
    Rs256,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The gateway's base URL (the server's issuer; `/mcp` below it).
    #[arg(long, env = "WARDEN_GATEWAY")]
    pub gateway: String,
    /// The registered agent this host acts as.
    #[arg(long, env = "WARDEN_AGENT", required_unless_present = "sign_in")]
    pub agent: Option<String>,
    /// The agent's private key (PKCS#8 PEM, as `warden agent register
    /// --generate-key` writes it); readable by its owner only. With
    /// --sign-in, the key the tokens are bound to (default: one of the session's).
    #[arg(long, env = "WARDEN_AGENT_KEY", required_unless_present_any = ["workload_token", "sign_in", "client_secret_file"], conflicts_with = "workload_token")]
    pub key: Option<PathBuf>,
    /// Instead of a key: a workload credential file the platform rotates
    /// (a Kubernetes projected service-account token, a SPIFFE JWT-SVID),
    /// re-read at every renewal; the gateway maps it to the agent
    /// (`[[workload_issuer]]`). The bridge's DPoP key is then its own, in memory.
    #[arg(long, env = "WARDEN_WORKLOAD_TOKEN", conflicts_with = "sign_in")]
    pub workload_token: Option<PathBuf>,
    /// Act for the human at the keyboard instead of a registered agent:
    /// sign them in through the browser (authorization code with PKCE, to a
    /// loopback redirect), as a host that speaks OAuth would. The tokens
    /// are bound to a key of this session's (DPoP) where the server can.
    #[arg(long)]
    pub sign_in: bool,
    /// With --sign-in: the host's client id at the authorization server,
    /// the URL of its Client ID Metadata Document (Warden: a host in
    /// `[[interactive.host]]`) or an id it registered; default: dynamic
    /// registration where the server offers it.
    #[arg(long, requires = "sign_in")]
    pub client_id: Option<String>,
    /// A file holding a client secret (readable by its owner only): with
    /// --sign-in and --client-id, a host registered as a confidential
    /// client; with --agent instead of --key, a machine client of another
    /// server's authorization server (client credentials; Warden's own
    /// agents authenticate with keys).
    #[arg(long, conflicts_with_all = ["key", "workload_token"])]
    pub client_secret_file: Option<PathBuf>,
    /// The authorization server expected (its issuer URL): the bridge sends
    /// nothing to any other the server names. Give it with a client
    /// secret, which would be good wherever it went.
    #[arg(long)]
    pub issuer: Option<String>,
    /// With --sign-in: the command that opens the sign-in page (the URL is
    /// its last argument); default: `xdg-open` (`open` on macOS). The URL
    /// is printed on standard error either way.
    #[arg(long, requires = "sign_in")]
    pub browser: Option<String>,
    /// The task the session's tokens are for (default: a new task id); one
    /// task is one monitored session across token renewals.
    #[arg(long)]
    pub task: Option<String>,
    /// Tools to ask for (`SERVER/TOOL`, space- or comma-separated; default:
    /// every tool the agent may use).
    #[arg(long)]
    pub scope: Option<String>,
    /// Serve streamable HTTP at http://ADDR/mcp (a loopback address) instead
    /// of stdio, to requests with `Authorization: Bearer $WARDEN_CONNECT_SECRET`.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub struct KeyArgs {
    /// Public key file: SPKI PEM (Ed25519, P-256 or RSA of 2048 bits or
    /// more), a public JWK, or the base64url Ed25519 key.
    #[arg(long, conflicts_with = "generate_key")]
    pub public_key: Option<PathBuf>,
    /// Generate a key pair and write the private key (PKCS#8 PEM, mode 0600) here.
    #[arg(long)]
    pub generate_key: Option<PathBuf>,
    /// The type of the generated key.
    #[arg(long, value_enum, default_value = "eddsa", requires = "generate_key")]
    pub key_alg: KeyAlgArg,
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// Agent name (the NAME in spiffe://TRUST_DOMAIN/agent/NAME).
    pub name: String,
    /// Accountable human owner (e.g. an email address).
    #[arg(long)]
    pub owner: String,
    #[arg(long)]
    pub purpose: String,
    /// Tools it may ever be granted: SERVER/TOOL or SERVER/*, comma separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub tools: Vec<String>,
    /// 0 assisted, 1 co-pilot, 2 semi-autonomous, 3 autonomous within bounds.
    #[arg(long, default_value_t = 1)]
    pub autonomy: i64,
    /// Register as a sub-agent of this agent (it may exchange the parent's tokens).
    #[arg(long)]
    pub parent: Option<String>,
    /// `dpop`: every token bound to the agent's key; `mtls`: every token
    /// bound to its X.509-SVID; `bearer`: unbound tokens allowed too, for
    /// clients that cannot sign DPoP proofs.
    #[arg(long, value_enum, default_value = "dpop")]
    pub token_binding: BindingArg,
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Subcommand)]
pub enum ToolCmd {
    /// Registered and observed tools with their pin status.
    List,
    /// A tool with its last observed definition.
    Show {
        tool: String,
    },
    /// Classify a tool.
    Set {
        tool: String,
        #[arg(long)]
        sensitivity: String,
        #[arg(long)]
        action_class: String,
        /// The tool can move data out (email, HTTP, upload).
        #[arg(long)]
        exfil: bool,
        /// Its results carry content from outside the trust boundary (web
        /// pages, inbound e-mail, shared files); reading them taints the session.
        #[arg(long)]
        untrusted: bool,
    },
    /// Pin the definition the gateway observed and allow calls.
    Approve {
        tool: String,
        /// Approve even though inspection flagged the definition (possible
        /// tool poisoning); read `warden tool show` first.
        #[arg(long)]
        accept_findings: bool,
    },
    Disable {
        tool: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KillCmd {
    /// Contain an agent: suspend it, revoke its tokens, close its sessions;
    /// its sub-agents are stopped too.
    Agent {
        agent: String,
        #[arg(long)]
        reason: String,
    },
    /// Stop every agent of a human owner.
    Owner {
        owner: String,
        #[arg(long)]
        reason: String,
    },
    /// Stop calls to every tool of an upstream server.
    Server {
        server: String,
        #[arg(long)]
        reason: String,
    },
    /// Stop calls to one tool (SERVER/TOOL).
    Tool {
        tool: String,
        #[arg(long)]
        reason: String,
    },
    /// Stop every agent request through the gateway.
    Global {
        #[arg(long)]
        reason: String,
    },
    /// Kill switches in force (with --all, lifted ones too).
    List {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Lift a kill switch by id (an operator decision; nothing lifts one
    /// automatically). Lifting an agent kill re-activates the agent.
    Lift {
        id: i64,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum OperatorCmd {
    /// Add an operator and print their API token (shown once; only its
    /// SHA-256 is stored).
    Add {
        name: String,
        /// viewer (read), approver (also decide approvals), admin (also
        /// suspend agents and engage kill switches).
        #[arg(long)]
        role: String,
    },
    List,
    /// Remove an operator; their token stops working at once.
    Remove {
        name: String,
    },
    /// End every dashboard sign-in session of an operator signed in at the
    /// identity provider (`sso:HUMAN`, as `warden audit` names them), at
    /// once on every replica; a later sign-in works again.
    EndSessions {
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsCmd {
    /// Pending approvals (with --all, decided ones too), newest first.
    List {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// One approval: agent, owner, tool, arguments, risk, why, who decided.
    /// With an approver's credential the arguments are shown in clear
    /// (`args`; secrets still masked), otherwise as audit records keep them.
    Show {
        id: String,
        #[command(flatten)]
        operator: OperatorCredential,
    },
    /// Approve a held call (the exact arguments shown, once), as the
    /// operator whose token you present; the two-person rule needs two.
    Approve {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        operator: OperatorCredential,
    },
    /// Deny a held call, as the operator whose token you present.
    Deny {
        id: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        operator: OperatorCredential,
    },
}

/// Who is acting: an operator token from `warden operator add`, read from a
/// file or `$WARDEN_OPERATOR_TOKEN` (never the command line, which other
/// users can read).
#[derive(Debug, Args)]
pub struct OperatorCredential {
    /// File holding your operator token (default: $WARDEN_OPERATOR_TOKEN).
    #[arg(long, value_name = "FILE")]
    pub operator_token_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum MonitorCmd {
    /// Per agent: calls learned, learning or not, risk, usual tools (as last
    /// saved by the gateway).
    Show {
        /// One agent (name or SPIFFE id); all when omitted.
        agent: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Revoke by token id, task or agent (and everything derived from them).
    Revoke {
        #[arg(long, group = "what")]
        jti: Option<String>,
        #[arg(long, group = "what")]
        task: Option<String>,
        #[arg(long, group = "what")]
        agent: Option<String>,
        #[arg(long, default_value = "revoked by an operator")]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Parse the schema and policies and validate them strictly.
    Validate { dir: Option<PathBuf> },
    /// Run the test cases in DIR/tests/*.toml.
    Test { dir: Option<PathBuf> },
    /// Validate and test DIR, then store it as the next policy version:
    /// every gateway sharing the database switches to it (at once on
    /// PostgreSQL, within `refresh_ms` on SQLite) without a restart.
    Push {
        dir: Option<PathBuf>,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// The last N records.
    Tail {
        #[arg(short = 'n', default_value_t = 20)]
        n: u64,
        #[arg(long)]
        json: bool,
    },
    /// Records matching every given filter.
    Query {
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        tool: Option<String>,
        #[arg(long)]
        decision: Option<String>,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        task: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Verify the chain and signatures (the store, or an exported file).
    Verify {
        /// JSONL export to verify instead of the store.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Gateway public key (SPKI PEM) for verifying an export elsewhere.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// A head published earlier (`SEQ:HASH`, as printed by verify): the
        /// export must reach it, which catches records cut from the end.
        #[arg(long)]
        head: Option<String>,
        /// Signed checkpoints published earlier (`warden audit checkpoint`):
        /// the export must contain exactly the records each one signs.
        #[arg(long)]
        checkpoint: Vec<PathBuf>,
    },
    /// Write the log for a SIEM: JSONL records (verifiable with `verify
    /// --file`) or OCSF events.
    Export {
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
    },
    /// Sign a Merkle checkpoint of the log now (if it grew) and print the
    /// newest one: a C2SP signed note to publish elsewhere.
    Checkpoint {
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Inclusion proof (JSON) that record SEQ is in the log a signed
    /// checkpoint commits to; check it with `warden audit check-proof`.
    Prove {
        seq: u64,
        /// Tree size of a stored checkpoint (default: the newest).
        #[arg(long)]
        size: Option<u64>,
    },
    /// Consistency proof (JSON) that a stored checkpoint extends the log at
    /// an older checkpoint's size.
    Consistency {
        /// Tree size of the older checkpoint the verifier holds.
        old_size: u64,
        /// Tree size of a stored checkpoint (default: the newest).
        #[arg(long)]
        size: Option<u64>,
    },
    /// Check a proof from `prove` or `consistency` offline, with the gateway
    /// public key (and for consistency the older checkpoint).
    CheckProof {
        file: PathBuf,
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// The older checkpoint (consistency proofs).
        #[arg(long)]
        old_checkpoint: Option<PathBuf>,
    },
    /// Print the gateway's audit/token signing public key (SPKI PEM).
    PublicKey,
}

#[derive(Debug, Subcommand)]
pub enum ExportCmd {
    /// Kubernetes NetworkPolicy (and with --istio, Istio AuthorizationPolicy)
    /// manifests: agents' pods reach only the gateway, upstreams admit only
    /// the gateway. Pods are matched by the labels `warden.dev/agent: NAME`
    /// and `warden.dev/upstream: SERVER`.
    K8s {
        #[arg(long, default_value = "default")]
        namespace: String,
        /// Label (KEY=VALUE) selecting the gateway's pods; repeatable.
        #[arg(long, default_value = "app.kubernetes.io/name=warden")]
        gateway_label: Vec<String>,
        #[arg(long, default_value_t = 8700)]
        gateway_port: u16,
        /// Also emit Istio AuthorizationPolicy (mTLS identities).
        #[arg(long)]
        istio: bool,
        /// The gateway's Kubernetes service account (Istio).
        #[arg(long, default_value = "warden")]
        gateway_service_account: String,
        /// Service account of an agent's pods; `{agent}` is the agent name (Istio).
        #[arg(long, default_value = "{agent}")]
        agent_service_account: String,
        /// Istio trust domain of the service accounts.
        #[arg(long, default_value = "cluster.local")]
        mesh_trust_domain: String,
        /// A JSON `List` instead of YAML documents.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Ocsf,
}

#[derive(Debug, Subcommand)]
pub enum InspectCmd {
    /// Precision, recall, F1 and false-positive rate per detector on
    /// labelled JSONL files (build them with `scripts/eval-data`).
    Eval {
        /// JSONL files, or directories whose *.jsonl files are read.
        #[arg(required = true)]
        dataset: Vec<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Exit non-zero unless the targets are met: secrets and PII F1 >= 0.95,
        /// injection recall >= 0.90 at a false-positive rate <= 0.01.
        #[arg(long)]
        check: bool,
        /// Require these targets instead (DETECTOR.METRIC>=VALUE or <=VALUE;
        /// METRIC: F1, precision, recall, FPR), e.g. --require secrets.F1>=0.90;
        /// DETECTOR[TEXT].METRIC judges only sources whose name contains TEXT.
        #[arg(long, value_name = "TARGET")]
        require: Vec<String>,
        /// Print up to 20 misses and false alarms per detector.
        #[arg(long)]
        examples: bool,
        /// Also write, per injection-labelled sample, the strongest confidence
        /// of each kind of rule signal (JSONL): what eval/train_injection.py
        /// fits the combination on.
        #[arg(long, value_name = "FILE")]
        signals: Option<PathBuf>,
    },
    /// Scan a file (or stdin) and print the findings as JSON. A JSON
    /// document is scanned value by value, anything else as text.
    Scan { file: Option<PathBuf> },
    /// Check tool definitions for poisoning before connecting a server: a
    /// `tools/list` result (`{"tools": [...]}`) or an array of tools, from a
    /// file or stdin. Exits non-zero if any tool is flagged.
    Tools { file: Option<PathBuf> },
}
