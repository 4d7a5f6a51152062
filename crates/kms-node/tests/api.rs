//! The HTTP API in process: a fake policy directory, a store in a temporary directory, requests
//! through `tower::ServiceExt::oneshot` (without a peer address, unless a test sets one).

#![allow(clippy::unwrap_used)]

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use alloy::{
    primitives::{Address, B256},
    signers::local::PrivateKeySigner,
};
use axum::{
    body::Body,
    extract::ConnectInfo,
    http::{header, HeaderMap, Request, StatusCode},
    Router,
};
use http_body_util::BodyExt;
use kms_crypto::{
    ethereum_address, recover_answer_signer,
    revocation::{OrderDomain, RevocationOrder, RevocationOrderBody},
    test_utils::PolicyKeys,
    AnswerContext,
};
use kms_node::{
    api::decode_node_key,
    store::FollowerBatch,
    test_utils::{FakeDirectory, FakePolicy},
    wire::{
        decode_b64, decode_hex, encode_b64, encode_public_key, KfragUpload, NodeInfo,
        ReencryptRequest, ReencryptResponse,
    },
    ApiState, Arrangement, Cursor, HeadBlock, HeadView, Limits, NodeIdentity, PolicyRecord, Store,
};
use serde_json::{json, Value};
use tower::ServiceExt;
use umbral_pre::{
    decrypt_reencrypted, encrypt, generate_kfrags, Capsule, CapsuleFrag, DefaultDeserialize,
    DefaultSerialize, PublicKey, SecretKey, Signer, VerifiedCapsuleFrag, VerifiedKeyFrag,
};

const CHAIN_ID: u64 = 31337;
const ADJUDICATOR: alloy::primitives::Address = alloy::primitives::Address::repeat_byte(0xad);
const POLICY_MANAGER: Address = Address::repeat_byte(0xb0);
const SECONDS_PER_PERIOD: u64 = 3_600;

/// The context a node serving `staker` signs its answers for `policy_id` in, in `period`; the
/// node's clock follows the local clock in these tests (no chain), so the period is now's.
fn answer_context(
    staker: alloy::primitives::Address,
    policy_id: [u8; 16],
    period: u64,
) -> AnswerContext {
    assert!(
        period.abs_diff(now() / SECONDS_PER_PERIOD) <= 1,
        "the answer names period {period}, not the clock's"
    );
    AnswerContext {
        chain_id: CHAIN_ID,
        adjudicator: ADJUDICATOR,
        staker,
        period,
        policy_id,
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Alice, Bob, one policy and its kfrags.
struct Policy {
    id: [u8; 16],
    /// Its owner's Ethereum key (signs revocation orders).
    owner: PrivateKeySigner,
    keys: PolicyKeys,
    kfrags: Vec<VerifiedKeyFrag>,
}

impl std::ops::Deref for Policy {
    type Target = PolicyKeys;

    fn deref(&self) -> &PolicyKeys {
        &self.keys
    }
}

impl Policy {
    fn new(id_byte: u8, threshold: usize, shares: usize) -> Self {
        Self::with_keys(id_byte, PolicyKeys::random(), threshold, shares)
    }

    fn with_keys(id_byte: u8, keys: PolicyKeys, threshold: usize, shares: usize) -> Self {
        Self {
            id: [id_byte; 16],
            owner: PrivateKeySigner::random(),
            kfrags: keys.kfrags(threshold, shares),
            keys,
        }
    }

    fn path(&self, what: &str) -> String {
        format!("/v1/policies/0x{}/{what}", alloy::hex::encode(self.id))
    }

    /// Alice's upload of kfrag `index` to the node of `staker` with Umbral key `node_pk`, sealed
    /// for this policy.
    fn upload(&self, index: usize, node_pk: &PublicKey, staker: Address) -> Value {
        serde_json::to_value(
            self.seal(&self.kfrags[index], node_pk, staker, self.id)
                .unwrap(),
        )
        .unwrap()
    }
}

impl Node {
    /// Alice's upload of `kfrag` for `policy`, properly sealed and signed, claiming
    /// `receiving_key` as Bob's key.
    async fn upload_sealed(
        &self,
        policy: &Policy,
        kfrag: &VerifiedKeyFrag,
        receiving_key: &PublicKey,
    ) -> (StatusCode, Value) {
        let sealed = KfragUpload::seal(
            kfrag,
            &self.umbral_pk,
            self.staker,
            policy.id,
            (&policy.delegating.public_key(), receiving_key),
            &policy.signer(),
        )
        .unwrap();
        self.post(
            &policy.path("kfrag"),
            &serde_json::to_value(sealed).unwrap(),
        )
        .await
    }
}

/// One node: its router, identity and the fake chain it reads.
struct Node {
    app: Router,
    directory: Arc<FakeDirectory>,
    /// What the follower would keep: the head and its unconfirmed revocations.
    head: Arc<HeadView>,
    store: Store,
    staker: Address,
    worker: Address,
    umbral_pk: PublicKey,
    _dir: tempfile::TempDir,
}

/// The default limits, but kfrag uploads: requests handed to the router in process carry no peer
/// address and all count as one client, which would exhaust the default burst in the tests that
/// upload many times (the rate limit has its own test).
fn test_limits() -> Limits {
    Limits {
        kfrag_upload_burst: 100_000,
        ..Limits::default()
    }
}

impl Node {
    fn start(directory: Arc<FakeDirectory>) -> Self {
        Self::start_with(directory, kms_node::Behaviour::Honest)
    }

    fn start_with(directory: Arc<FakeDirectory>, behaviour: kms_node::Behaviour) -> Self {
        Self::start_with_limits(directory, behaviour, test_limits())
    }

    fn start_with_limits(
        directory: Arc<FakeDirectory>,
        behaviour: kms_node::Behaviour,
        limits: Limits,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("node.redb")).unwrap();
        let head = Arc::new(HeadView::new(limits.max_head_age));
        publish_head(&head, HashSet::new());
        let worker = PrivateKeySigner::random();
        let identity = NodeIdentity {
            staker: PrivateKeySigner::random().address(),
            worker: worker.clone(),
            umbral: SecretKey::random(),
            chain_id: CHAIN_ID,
            adjudicator: ADJUDICATOR,
            policy_manager: POLICY_MANAGER,
            seconds_per_period: SECONDS_PER_PERIOD,
        };
        let (staker, umbral_pk) = (identity.staker, identity.umbral.public_key());
        let state = ApiState::new(identity, store.clone(), directory.clone(), limits)
            .unwrap()
            .with_behaviour(behaviour)
            .with_head_view(head.clone());
        Self {
            app: kms_node::router(Arc::new(state)),
            directory,
            head,
            store,
            staker,
            worker: worker.address(),
            umbral_pk,
            _dir: dir,
        }
    }

    /// Puts `policy` on the fake chain, naming `nodes`.
    fn create_policy(&self, policy: &Policy, nodes: Vec<Address>) {
        let mut nodes = nodes;
        nodes.sort();
        self.directory.insert(
            policy.id,
            FakePolicy {
                signer: ethereum_address(&policy.signer.public_key()),
                arrangement: Arrangement {
                    nodes,
                    end_timestamp: now() + 3600,
                    owner: policy.owner.address(),
                },
            },
        );
    }

    async fn request(&self, method: &str, uri: &str, body: Body) -> (StatusCode, Value, String) {
        let (status, _, value, text) = self.request_from(None, method, uri, body).await;
        (status, value, text)
    }

    /// A request from `peer` (as a listener would tell the router), with the answer's headers.
    async fn request_from(
        &self,
        peer: Option<SocketAddr>,
        method: &str,
        uri: &str,
        body: Body,
    ) -> (StatusCode, HeaderMap, Value, String) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .unwrap();
        if let Some(peer) = peer {
            request.extensions_mut().insert(ConnectInfo(peer));
        }
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, value, text)
    }

    /// A POST of `body` with the answer's headers.
    async fn post_full(&self, uri: &str, body: &Value) -> (StatusCode, HeaderMap, Value) {
        let (status, headers, value, _) = self
            .request_from(
                None,
                "POST",
                uri,
                Body::from(serde_json::to_vec(body).unwrap()),
            )
            .await;
        (status, headers, value)
    }

    async fn post(&self, uri: &str, body: &Value) -> (StatusCode, Value) {
        let (status, value, _) = self
            .request("POST", uri, Body::from(serde_json::to_vec(body).unwrap()))
            .await;
        (status, value)
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value, String) {
        self.request("GET", uri, Body::empty()).await
    }

    /// Bob's signed request for `capsules` from this node.
    fn reencrypt_body(&self, policy: &Policy, capsules: &[Capsule], timestamp: u64) -> Value {
        let bytes: Vec<Vec<u8>> = capsules
            .iter()
            .map(|c| c.to_bytes().unwrap().into_vec())
            .collect();
        self.signed_request(&policy.bob, policy.id, &bytes, timestamp)
    }

    /// A re-encryption request to this node for `policy_id` of `capsules` (any bytes), signed
    /// by `requester`.
    fn signed_request(
        &self,
        requester: &SecretKey,
        policy_id: [u8; 16],
        capsules: &[Vec<u8>],
        timestamp: u64,
    ) -> Value {
        serde_json::to_value(ReencryptRequest::sign(
            requester,
            policy_id,
            self.staker,
            timestamp,
            capsules,
        ))
        .unwrap()
    }

    /// Asks for cfrags, checks every worker signature, and returns the verified cfrags.
    async fn reencrypt_ok(
        &self,
        policy: &Policy,
        capsules: &[Capsule],
    ) -> Vec<VerifiedCapsuleFrag> {
        let body = self.reencrypt_body(policy, capsules, now());
        let (status, value) = self.post(&policy.path("reencrypt"), &body).await;
        assert_eq!(status, StatusCode::OK, "{value}");
        let response: ReencryptResponse = serde_json::from_value(value).unwrap();
        assert_eq!(response.cfrags.len(), capsules.len());
        response
            .cfrags
            .iter()
            .zip(capsules)
            .map(|(answer, capsule)| {
                let cfrag_bytes = decode_b64("cfrag", &answer.cfrag).unwrap();
                let cfrag = CapsuleFrag::from_bytes(&cfrag_bytes).unwrap();
                let signature = decode_hex("signature", &answer.signature).unwrap();
                assert_eq!(signature.len(), 65);
                let signer = recover_answer_signer(
                    &answer_context(self.staker, policy.id, answer.period),
                    &capsule.to_bytes_simple(),
                    &cfrag.to_bytes_simple(),
                    &signature,
                )
                .unwrap();
                assert_eq!(signer, self.worker);
                cfrag
                    .verify(
                        capsule,
                        &policy.signer.public_key(),
                        &policy.delegating.public_key(),
                        &policy.bob.public_key(),
                    )
                    .unwrap()
            })
            .collect()
    }
}

fn error_of(value: &Value) -> &str {
    value["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error reason in {value}"))
}

#[tokio::test]
async fn node_info_status_and_metrics() {
    let node = Node::start(Arc::default());
    let (status, value, _) = node.get("/v1/node").await;
    assert_eq!(status, StatusCode::OK);
    let info: NodeInfo = serde_json::from_value(value).unwrap();
    assert_eq!(info.staker, node.staker);
    assert_eq!(info.worker, node.worker);
    assert_eq!(info.chain_id, CHAIN_ID);
    assert_eq!(decode_node_key(&info).unwrap(), node.umbral_pk);
    assert_eq!(info.max_capsules_per_request, 64);

    let (status, value, _) = node.get("/v1/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(value["kfrags"], 0);

    let (status, value, _) = node.get("/v1/nowhere").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    error_of(&value);

    let (status, _, text) = node.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains(r#"kms_node_http_requests_total{endpoint="/v1/node",status="200"} 1"#),
        "{text}"
    );
    assert!(text.contains("kms_node_kfrags_stored 0"), "{text}");
}

/// A router built without the investigator's parts says so (501), and the evidence endpoints
/// check their inputs first.
#[tokio::test]
async fn investigator_endpoints_without_an_investigator() {
    let node = Node::start(Arc::default());
    let (status, value) = node.post("/v1/evidence", &serde_json::json!({})).await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{value}");
    assert!(error_of(&value).contains("does not file evidence"));
    let (status, value, _) = node.get("/v1/network").await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{value}");
    let (status, value, _) = node.get("/v1/evidence/0x1234").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{value}");
    let id = format!("/v1/evidence/0x{}", "ab".repeat(32));
    let (status, value, _) = node.get(&id).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{value}");
    assert!(error_of(&value).contains("no such evidence"));
}

#[tokio::test]
async fn upload_then_reencrypt_with_two_nodes() {
    let directory = Arc::new(FakeDirectory::default());
    let nodes = [
        Node::start(directory.clone()),
        Node::start(directory.clone()),
    ];
    let policy = Policy::new(1, 2, 2);
    nodes[0].create_policy(&policy, nodes.iter().map(|n| n.staker).collect());

    for (i, node) in nodes.iter().enumerate() {
        let upload = policy.upload(i, &node.umbral_pk, node.staker);
        let (status, value) = node.post(&policy.path("kfrag"), &upload).await;
        assert_eq!(status, StatusCode::CREATED, "{value}");
        assert_eq!(value["created"], true);
        // The same kfrag again (even encrypted anew) is accepted and changes nothing.
        let again = policy.upload(i, &node.umbral_pk, node.staker);
        let (status, value) = node.post(&policy.path("kfrag"), &again).await;
        assert_eq!(status, StatusCode::OK, "{value}");
        assert_eq!(value["created"], false);
        // Another kfrag of the same policy is refused.
        let other = policy.upload(1 - i, &node.umbral_pk, node.staker);
        let (status, value) = node.post(&policy.path("kfrag"), &other).await;
        assert_eq!(status, StatusCode::CONFLICT, "{value}");
        error_of(&value);
    }
    let (_, value, _) = nodes[0].get("/v1/status").await;
    assert_eq!(value["kfrags"], 1);

    // Enrico encrypts two messages to Alice; Bob gets one cfrag per capsule from each node.
    let messages = [b"first secret".as_slice(), b"second secret".as_slice()];
    let encrypted: Vec<(Capsule, Box<[u8]>)> = messages
        .iter()
        .map(|m| encrypt(&policy.delegating.public_key(), m).unwrap())
        .collect();
    let capsules: Vec<Capsule> = encrypted.iter().map(|(c, _)| c.clone()).collect();
    let mut per_node = Vec::new();
    for node in &nodes {
        per_node.push(node.reencrypt_ok(&policy, &capsules).await);
    }
    for (i, (capsule, ciphertext)) in encrypted.iter().enumerate() {
        let cfrags = per_node.iter().map(|cfrags| cfrags[i].clone());
        let plaintext = decrypt_reencrypted(
            &policy.bob,
            &policy.delegating.public_key(),
            capsule,
            cfrags,
            ciphertext,
        )
        .unwrap();
        assert_eq!(&*plaintext, messages[i]);
    }

    let (_, _, text) = nodes[0].get("/metrics").await;
    assert!(text.contains("kms_node_reencryptions_total 2"), "{text}");
    assert!(text.contains("kms_node_kfrags_stored 1"), "{text}");
}

/// A node with one policy (threshold 1) and its kfrag uploaded.
async fn node_with_policy() -> (Node, Policy, Capsule) {
    policy_on(Node::start(Arc::default())).await
}

/// `node` holding the kfrag of a 1-of-1 policy naming it (and another node), and a capsule.
async fn policy_on(node: Node) -> (Node, Policy, Capsule) {
    let policy = Policy::new(7, 1, 1);
    node.create_policy(&policy, vec![node.staker, Address::repeat_byte(0x42)]);
    let (status, value) = node
        .post(
            &policy.path("kfrag"),
            &policy.upload(0, &node.umbral_pk, node.staker),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{value}");
    let (capsule, _) = encrypt(&policy.delegating.public_key(), b"hello").unwrap();
    (node, policy, capsule)
}

#[tokio::test]
async fn wrong_requester_is_refused() {
    let (node, policy, capsule) = node_with_policy().await;
    let mallory = Policy::with_keys(
        7,
        PolicyKeys {
            bob: SecretKey::random(),
            ..PolicyKeys::random()
        },
        1,
        1,
    );
    let body = node.reencrypt_body(&mallory, std::slice::from_ref(&capsule), now());
    let (status, value) = node.post(&policy.path("reencrypt"), &body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{value}");
    error_of(&value);

    // Bob's signature for another node does not work here either.
    let mut body = node.reencrypt_body(&policy, std::slice::from_ref(&capsule), now());
    let other_node = serde_json::to_value(ReencryptRequest::sign(
        &policy.bob,
        policy.id,
        Address::repeat_byte(0x42),
        now(),
        &[capsule.to_bytes().unwrap().into_vec()],
    ))
    .unwrap();
    body["signature"] = other_node["signature"].clone();
    body["timestamp"] = other_node["timestamp"].clone();
    let (status, value) = node.post(&policy.path("reencrypt"), &body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{value}");
}

/// The follower's view of the head at block 100, with `revoked` revoked in unconfirmed blocks.
fn publish_head(head: &HeadView, revoked: HashSet<[u8; 16]>) {
    head.publish(
        HeadBlock {
            number: 100,
            hash: B256::repeat_byte(0x10),
            timestamp: now(),
        },
        revoked,
    );
}

/// The follower confirmed `policy` naming `nodes` (and ending at `end`), and its revocation if
/// `revoked`.
fn confirm(node: &Node, policy: &Policy, nodes: Vec<Address>, end: u64, revoked: bool) {
    let batch = FollowerBatch {
        created: vec![(
            policy.id,
            PolicyRecord {
                nodes,
                end_timestamp: end,
                kfrag_signer: ethereum_address(&policy.signer.public_key()),
                owner: policy.owner.address(),
                created_block: 90,
                revoked: false,
            },
        )],
        revoked: if revoked { vec![policy.id] } else { vec![] },
        extended: vec![],
    };
    let cursor = Cursor {
        block: 98,
        hash: B256::repeat_byte(0x98),
    };
    node.store.apply_batch(&batch, cursor).unwrap();
}

#[tokio::test]
async fn a_revocation_is_refused_from_the_head_then_from_the_store() {
    let (node, policy, capsule) = node_with_policy().await;
    node.reencrypt_ok(&policy, std::slice::from_ref(&capsule))
        .await;
    // Seen at the head, not yet confirmed: 410 at once, the kfrag kept.
    publish_head(&node.head, HashSet::from([policy.id]));
    let body = node.reencrypt_body(&policy, std::slice::from_ref(&capsule), now());
    let (status, value) = node.post(&policy.path("reencrypt"), &body).await;
    assert_eq!(status, StatusCode::GONE, "{value}");
    assert!(
        error_of(&value).contains("revoked (seen at block 100, not yet confirmed)"),
        "{value}"
    );
    assert!(node.store.get_kfrag(policy.id).unwrap().is_some());
    // A reorg dropped the revocation: served again.
    publish_head(&node.head, HashSet::new());
    node.reencrypt_ok(&policy, std::slice::from_ref(&capsule))
        .await;
    // Confirmed: the follower deleted the kfrag, and Bob still learns why (not a 404).
    let mut nodes = vec![node.staker, Address::repeat_byte(0x42)];
    nodes.sort();
    confirm(&node, &policy, nodes, now() + 3600, true);
    assert!(node.store.get_kfrag(policy.id).unwrap().is_none());
    let body = node.reencrypt_body(&policy, std::slice::from_ref(&capsule), now());
    let (status, value) = node.post(&policy.path("reencrypt"), &body).await;
    assert_eq!(status, StatusCode::GONE, "{value}");
    assert_eq!(
        error_of(&value),
        "the policy, or this node's arrangement in it, is revoked"
    );

    // Nor are kfrags of a revoked policy accepted, confirmed or not.
    let revoked = Policy::new(8, 1, 1);
    node.create_policy(&revoked, vec![node.staker]);
    let upload = revoked.upload(0, &node.umbral_pk, node.staker);
    publish_head(&node.head, HashSet::from([revoked.id]));
    let (status, value) = node.post(&revoked.path("kfrag"), &upload).await;
    assert_eq!(status, StatusCode::GONE, "{value}");
    publish_head(&node.head, HashSet::new());
    confirm(&node, &revoked, vec![node.staker], now() + 3600, true);
    let (status, value) = node.post(&revoked.path("kfrag"), &upload).await;
    assert_eq!(status, StatusCode::GONE, "{value}");
}

/// The owner's order for `policy`, revoking `node`'s arrangement (zero: the whole policy), as a
/// request body.
async fn order_body(
    policy: &Policy,
    signer: &PrivateKeySigner,
    node: Address,
    deadline: u64,
) -> Value {
    let domain = OrderDomain {
        chain_id: CHAIN_ID,
        policy_manager: POLICY_MANAGER,
    };
    let order = RevocationOrder::sign(signer, domain, policy.id, node, deadline)
        .await
        .unwrap();
    serde_json::to_value(RevocationOrderBody::from(&order)).unwrap()
}

#[tokio::test]
async fn a_signed_revocation_order_is_refused_at_once_kept_and_handed_out() {
    let (node, policy, capsule) = node_with_policy().await;
    node.reencrypt_ok(&policy, std::slice::from_ref(&capsule))
        .await;
    let path = policy.path("revocation");
    let deadline = now() + 600;
    let (status, value, _) = node.get(&path).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{value}");

    // Orders the node must not take, each with its reason; the policy is still served after.
    let stranger = PrivateKeySigner::random();
    let refusals = [
        (
            order_body(&policy, &stranger, Address::ZERO, deadline).await,
            StatusCode::FORBIDDEN,
            "not by the policy's owner",
        ),
        (
            order_body(&policy, &policy.owner, Address::repeat_byte(0x42), deadline).await,
            StatusCode::BAD_REQUEST,
            "send it to that node",
        ),
        (
            order_body(&policy, &policy.owner, Address::ZERO, now() - 1).await,
            StatusCode::BAD_REQUEST,
            "expired",
        ),
        (
            json!({"policyId": "0x07", "node": Address::ZERO, "deadline": deadline, "signature": "0x00"}),
            StatusCode::BAD_REQUEST,
            "policyId",
        ),
        (
            json!({"policyId": 1}),
            StatusCode::BAD_REQUEST,
            "invalid JSON body",
        ),
    ];
    for (body, expected, reason) in refusals {
        let (status, value) = node.post(&path, &body).await;
        assert_eq!(status, expected, "{value}");
        assert!(error_of(&value).contains(reason), "{reason}: {value}");
    }
    // Another chain's (or contract's) order does not recover the owner.
    let mut other_chain = order_body(&policy, &policy.owner, Address::ZERO, deadline).await;
    let domain = OrderDomain {
        chain_id: 1,
        policy_manager: POLICY_MANAGER,
    };
    let order = RevocationOrder::sign(&policy.owner, domain, policy.id, Address::ZERO, deadline)
        .await
        .unwrap();
    other_chain["signature"] = json!(RevocationOrderBody::from(&order).signature);
    let (status, value) = node.post(&path, &other_chain).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{value}");
    // The malleable twin of a valid signature (s' = n - s): the contract refuses it, so must
    // the node.
    let mut high_s = order_body(&policy, &policy.owner, Address::ZERO, deadline).await;
    let mut signature = decode_hex("signature", high_s["signature"].as_str().unwrap()).unwrap();
    let n = alloy::primitives::U256::from_be_bytes(alloy::hex!(
        "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"
    ));
    let s = alloy::primitives::U256::from_be_slice(&signature[32..64]);
    signature[32..64].copy_from_slice(&(n - s).to_be_bytes::<32>());
    signature[64] ^= 0x1b ^ 0x1c;
    high_s["signature"] = json!(alloy::hex::encode_prefixed(&signature));
    let (status, value) = node.post(&path, &high_s).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{value}");
    assert!(error_of(&value).contains("s is above n/2"), "{value}");
    // Posted under another policy's path, or for a policy the node does not hold.
    let other = Policy::new(9, 1, 1);
    let (status, value) = node
        .post(
            &other.path("revocation"),
            &order_body(&policy, &policy.owner, Address::ZERO, deadline).await,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{value}");
    let (status, value) = node
        .post(
            &other.path("revocation"),
            &order_body(&other, &other.owner, Address::ZERO, deadline).await,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{value}");
    node.reencrypt_ok(&policy, std::slice::from_ref(&capsule))
        .await;

    // The owner's order for the whole policy: refused from the answer on, no block needed (the
    // head view is unchanged), and kept once however often it is sent.
    let whole = order_body(&policy, &policy.owner, Address::ZERO, deadline).await;
    let (status, value) = node.post(&path, &whole).await;
    assert_eq!(status, StatusCode::CREATED, "{value}");
    assert_eq!(value["created"], json!(true));
    let (status, value) = node.post(&path, &whole).await;
    assert_eq!(status, StatusCode::OK, "{value}");
    assert_eq!(value["created"], json!(false));
    let body = node.reencrypt_body(&policy, std::slice::from_ref(&capsule), now());
    let (status, value) = node.post(&policy.path("reencrypt"), &body).await;
    assert_eq!(status, StatusCode::GONE, "{value}");
    assert!(error_of(&value).contains("by a signed order"), "{value}");
    let (status, value) = node
        .post(
            &policy.path("kfrag"),
            &policy.upload(0, &node.umbral_pk, node.staker),
        )
        .await;
    assert_eq!(status, StatusCode::GONE, "{value}");
    // An order for this node's arrangement too, then a later whole-policy order replacing the
    // first: both kinds handed to anyone, the whole-policy one first.
    let mine = order_body(&policy, &policy.owner, node.staker, deadline).await;
    assert_eq!(node.post(&path, &mine).await.0, StatusCode::CREATED);
    let later = order_body(&policy, &policy.owner, Address::ZERO, deadline + 60).await;
    assert_eq!(node.post(&path, &later).await.0, StatusCode::CREATED);
    assert_eq!(
        node.post(&path, &whole).await.0,
        StatusCode::OK,
        "an earlier deadline changes nothing"
    );
    let (status, value, _) = node.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{value}");
    assert_eq!(value["orders"], json!([later, mine]));
    let (_, _, text) = node.get("/metrics").await;
    assert!(
        text.contains("kms_node_revocation_orders_kept_total 3"),
        "{text}"
    );

    // Settled on chain and confirmed: the orders are spent and forgotten, Bob learns why.
    let mut nodes = vec![node.staker, Address::repeat_byte(0x42)];
    nodes.sort();
    confirm(&node, &policy, nodes, now() + 3600, true);
    let (status, value, _) = node.get(&path).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{value}");
    let (status, value) = node.post(&path, &later).await;
    assert_eq!(status, StatusCode::GONE, "{value}");
    let body = node.reencrypt_body(&policy, std::slice::from_ref(&capsule), now());
    let (status, value) = node.post(&policy.path("reencrypt"), &body).await;
    assert_eq!(status, StatusCode::GONE, "{value}");
    assert!(error_of(&value).contains("is revoked"), "{value}");
}

#[tokio::test]
async fn an_order_for_a_confirmed_policy_costs_no_chain_call() {
    let (node, policy, capsule) = node_with_policy().await;
    confirm(
        &node,
        &policy,
        vec![node.staker, Address::repeat_byte(0x42)],
        now() + 3600,
        false,
    );
    // The chain is down: the owner comes from the store.
    node.directory.fail_with(Some("down".into()));
    let order = order_body(&policy, &policy.owner, Address::ZERO, now() + 60).await;
    let (status, value) = node.post(&policy.path("revocation"), &order).await;
    assert_eq!(status, StatusCode::CREATED, "{value}");
    let body = node.reencrypt_body(&policy, std::slice::from_ref(&capsule), now());
    assert_eq!(
        node.post(&policy.path("reencrypt"), &body).await.0,
        StatusCode::GONE
    );

    // Not confirmed yet: the chain is asked, and its failure is a 503 (retry), not a refusal.
    let (node, policy, _) = node_with_policy().await;
    node.directory.fail_with(Some("down".into()));
    let order = order_body(&policy, &policy.owner, Address::ZERO, now() + 60).await;
    let (status, value) = node.post(&policy.path("revocation"), &order).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{value}");
    node.directory.fail_with(None);
    let (status, value) = node.post(&policy.path("revocation"), &order).await;
    assert_eq!(status, StatusCode::CREATED, "{value}");
}

#[tokio::test]
async fn an_unconfirmed_policy_is_served_only_while_the_read_chain_holds_its_creation() {
    let (node, policy, capsule) = node_with_policy().await;
    let head = HeadBlock {
        number: 100,
        hash: B256::repeat_byte(0x10),
        timestamp: now(),
    };
    // The follower read its creation above the confirmed blocks: served.
    node.head
        .publish_followed(head, HashSet::new(), HashSet::from([policy.id]));
    node.reencrypt_ok(&policy, std::slice::from_ref(&capsule))
        .await;
    // A reorg removed it (or the node has not read its block yet): 503, retry.
    node.head
        .publish_followed(head, HashSet::new(), HashSet::new());
    let body = node.reencrypt_body(&policy, std::slice::from_ref(&capsule), now());
    let (status, value) = node.post(&policy.path("reencrypt"), &body).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{value}");
    assert!(
        error_of(&value).contains("does not hold this policy's creation"),
        "{value}"
    );
    // Confirmed: served from the store's record, whatever the unconfirmed blocks hold.
    let mut nodes = vec![node.staker, Address::repeat_byte(0x42)];
    nodes.sort();
    confirm(&node, &policy, nodes, now() + 3600, false);
    node.reencrypt_ok(&policy, std::slice::from_ref(&capsule))
        .await;
}

#[tokio::test]
async fn an_ended_policy_is_410_and_one_never_uploaded_404() {
    let (node, policy, capsule) = node_with_policy().await;
    // The pruning duty deleted the kfrag of a policy that ended: 410 with its end.
    let end = now() - 10;
    confirm(&node, &policy, vec![node.staker], end, false);
    node.store.delete_kfrag(policy.id).unwrap();
    let body = node.reencrypt_body(&policy, std::slice::from_ref(&capsule), now());
    let (status, value) = node.post(&policy.path("reencrypt"), &body).await;
    assert_eq!(status, StatusCode::GONE, "{value}");
    assert_eq!(
        error_of(&value),
        format!("the policy ended at {end} (Unix seconds)")
    );
    // A live policy whose kfrag never reached the node: 404.
    let other = Policy::new(9, 1, 1);
    confirm(&node, &other, vec![node.staker], now() + 3600, false);
    let body = node.reencrypt_body(&other, std::slice::from_ref(&capsule), now());
    let (status, value) = node.post(&other.path("reencrypt"), &body).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{value}");
    assert_eq!(error_of(&value), "this node holds no kfrag for the policy");
}

/// `[limits] max_capsules` is advertised in `GET /v1/node`, so that clients split their requests
/// by it; a node older than the field is read as taking the default.
#[tokio::test]
async fn the_capsule_limit_is_advertised_and_enforced() {
    let limits = Limits {
        max_capsules: 3,
        ..test_limits()
    };
    let node = Node::start_with_limits(Arc::default(), kms_node::Behaviour::Honest, limits);
    let (_, value, _) = node.get("/v1/node").await;
    assert_eq!(value["maxCapsulesPerRequest"], 3, "{value}");
    let (node, policy, capsule) = policy_on(node).await;
    node.reencrypt_ok(&policy, &vec![capsule.clone(); 3]).await;
    let body = node.reencrypt_body(&policy, &vec![capsule; 4], now());
    let (status, value) = node.post(&policy.path("reencrypt"), &body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{value}");

    let old = json!({
        "staker": node.staker, "worker": node.worker, "umbralPublicKey": "0x02",
        "chainId": 1, "version": "0.0.1",
    });
    let info: NodeInfo = serde_json::from_value(old).unwrap();
    assert_eq!(
        info.max_capsules_per_request,
        kms_crypto::wire::DEFAULT_MAX_CAPSULES_PER_REQUEST
    );
}

#[tokio::test]
async fn a_stale_head_view_is_a_503_until_the_head_is_read_again() {
    let limits = Limits {
        max_head_age: Duration::from_millis(300),
        ..test_limits()
    };
    let node = Node::start_with_limits(Arc::default(), kms_node::Behaviour::Honest, limits);
    let (node, policy, capsule) = policy_on(node).await;
    node.reencrypt_ok(&policy, std::slice::from_ref(&capsule))
        .await;
    // The follower has not read the head for longer than the bound (the RPC is down).
    tokio::time::sleep(Duration::from_millis(400)).await;
    let body = node.reencrypt_body(&policy, std::slice::from_ref(&capsule), now());
    let (status, headers, value) = node.post_full(&policy.path("reencrypt"), &body).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{value}");
    assert!(
        error_of(&value).contains("its RPC endpoint is not answering"),
        "{value}"
    );
    assert!(headers.contains_key(header::RETRY_AFTER));
    // It reads the head again: served.
    publish_head(&node.head, HashSet::new());
    node.reencrypt_ok(&policy, std::slice::from_ref(&capsule))
        .await;
}

/// Regression (review item 10): an upload seen on its way to the node could be stored under
/// another policy of the same Alice (same kfrag signer and keys), after which her real upload for
/// that policy got 409. The kfrag signer now signs each upload for its policy and node.
#[tokio::test]
async fn an_upload_cannot_be_stored_under_another_policy() {
    let node = Node::start(Arc::default());
    let first = Policy::new(7, 1, 1);
    let second = Policy::with_keys(8, first.keys.clone(), 1, 1);
    node.create_policy(&first, vec![node.staker]);
    node.create_policy(&second, vec![node.staker]);
    // The first policy's upload, replayed for the second: refused before anything is stored.
    let seen = first.upload(0, &node.umbral_pk, node.staker);
    let (status, value) = node.post(&second.path("kfrag"), &seen).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{value}");
    // So is an upload sealed for another node.
    let elsewhere = first.upload(0, &node.umbral_pk, Address::repeat_byte(0x42));
    let (status, value) = node.post(&first.path("kfrag"), &elsewhere).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{value}");
    // Alice's own uploads are stored.
    let (status, value) = node
        .post(
            &second.path("kfrag"),
            &second.upload(0, &node.umbral_pk, node.staker),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{value}");
    let (status, value) = node.post(&first.path("kfrag"), &seen).await;
    assert_eq!(status, StatusCode::CREATED, "{value}");
}

#[tokio::test]
async fn kfrag_upload_checks() {
    let node = Node::start(Arc::default());

    // Not on chain.
    let unknown = Policy::new(1, 1, 1);
    let (status, value) = node
        .post(
            &unknown.path("kfrag"),
            &unknown.upload(0, &node.umbral_pk, node.staker),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{value}");

    // On chain, but not naming this node.
    let elsewhere = Policy::new(2, 1, 1);
    node.create_policy(&elsewhere, vec![Address::repeat_byte(0x42)]);
    let (status, value) = node
        .post(
            &elsewhere.path("kfrag"),
            &elsewhere.upload(0, &node.umbral_pk, node.staker),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{value}");
    assert!(error_of(&value).contains("does not name this node"));

    // Signed by another key than the policy's kfrag signer.
    let policy = Policy::new(3, 1, 1);
    node.create_policy(&policy, vec![node.staker]);
    let forged = Policy {
        id: policy.id,
        ..Policy::new(3, 1, 1)
    };
    let (status, value) = node
        .post(
            &policy.path("kfrag"),
            &forged.upload(0, &node.umbral_pk, node.staker),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{value}");

    // Encrypted to another node's key.
    let other_pk = SecretKey::random().public_key();
    let (status, value) = node
        .post(
            &policy.path("kfrag"),
            &policy.upload(0, &other_pk, node.staker),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{value}");

    // Another receiving key than the one signed: the upload's signature no longer holds.
    let mut upload = policy.upload(0, &node.umbral_pk, node.staker);
    upload["receivingKey"] = json!(encode_public_key(&SecretKey::random().public_key()));
    let (status, value) = node.post(&policy.path("kfrag"), &upload).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{value}");
    assert!(error_of(&value).contains("signature"), "{value}");
    // Signed by Alice, but claiming another receiving key than the kfrag was made for.
    let signer = Signer::new(policy.signer.clone());
    let wrong_bob = SecretKey::random().public_key();
    let (status, value) = node
        .upload_sealed(&policy, &policy.kfrags[0], &wrong_bob)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{value}");
    assert!(error_of(&value).contains("does not verify"));

    // Regression (review item 10): kfrags that do not sign both keys verify with any key in
    // the unsigned place, so they were accepted; now they are refused.
    for (sign_delegating, sign_receiving, missing) in
        [(false, true, "delegating"), (true, false, "receiving")]
    {
        let kfrag = generate_kfrags(
            &policy.delegating,
            &policy.bob.public_key(),
            &signer,
            1,
            1,
            sign_delegating,
            sign_receiving,
        )
        .into_vec()
        .remove(0);
        let (status, value) = node
            .upload_sealed(&policy, &kfrag, &policy.bob.public_key())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{value}");
        assert!(
            error_of(&value).contains(&format!("does not sign the {missing} key")),
            "{value}"
        );
    }

    let (_, value, _) = node.get("/v1/status").await;
    assert_eq!(value["kfrags"], 0);
}

#[tokio::test]
async fn malformed_requests_get_4xx_with_a_reason() {
    let (node, policy, capsule) = node_with_policy().await;
    let reencrypt = policy.path("reencrypt");
    let good = node.reencrypt_body(&policy, std::slice::from_ref(&capsule), now());

    let cases: Vec<(&str, String, Body, StatusCode)> = vec![
        (
            "not JSON",
            reencrypt.clone(),
            Body::from("{nope"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "empty body",
            reencrypt.clone(),
            Body::empty(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown field",
            reencrypt.clone(),
            Body::from(
                json!({"capsules": [], "timestamp": 1, "signature": "", "x": 1}).to_string(),
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            "bad base64",
            reencrypt.clone(),
            Body::from({
                let mut v = good.clone();
                v["capsules"] = json!(["***"]);
                v.to_string()
            }),
            StatusCode::BAD_REQUEST,
        ),
        (
            "capsule that is no capsule, signed by Bob",
            reencrypt.clone(),
            Body::from(
                serde_json::to_string(&ReencryptRequest::sign(
                    &policy.bob,
                    policy.id,
                    node.staker,
                    now(),
                    &[b"garbage".to_vec()],
                ))
                .unwrap(),
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            "bad signature hex",
            reencrypt.clone(),
            Body::from({
                let mut v = good.clone();
                v["signature"] = json!("0xzz");
                v.to_string()
            }),
            StatusCode::BAD_REQUEST,
        ),
        (
            "no capsules",
            reencrypt.clone(),
            Body::from({
                let mut v = good.clone();
                v["capsules"] = json!([]);
                v.to_string()
            }),
            StatusCode::BAD_REQUEST,
        ),
        (
            "too many capsules",
            reencrypt.clone(),
            Body::from({
                let mut v = good.clone();
                v["capsules"] = json!(vec![v["capsules"][0].clone(); 65]);
                v.to_string()
            }),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "oversized body",
            reencrypt.clone(),
            Body::from(vec![b' '; 300 * 1024]),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "bad policy id",
            "/v1/policies/0x1234/reencrypt".to_owned(),
            Body::from(good.to_string()),
            StatusCode::BAD_REQUEST,
        ),
        (
            "bad upload key",
            policy.path("kfrag"),
            Body::from({
                let mut v = policy.upload(0, &node.umbral_pk, node.staker);
                v["delegatingKey"] = json!("0x02");
                v.to_string()
            }),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown policy",
            format!("/v1/policies/0x{}/reencrypt", "11".repeat(16)),
            Body::from(good.to_string()),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (name, uri, body, expected) in cases {
        let (status, value, text) = node.request("POST", &uri, body).await;
        assert_eq!(status, expected, "{name}: {text}");
        assert!(
            value["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{name}: no reason in {text}"
        );
    }
    let (status, value, _) = node.request("GET", &reencrypt, Body::empty()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    error_of(&value);

    // After all that, the good request still works.
    let (status, value) = node.post(&reencrypt, &good).await;
    assert_eq!(status, StatusCode::OK, "{value}");
}

#[tokio::test]
async fn replayed_and_stale_requests_are_refused() {
    let (node, policy, capsule) = node_with_policy().await;
    let body = node.reencrypt_body(&policy, std::slice::from_ref(&capsule), now());
    let (status, value) = node.post(&policy.path("reencrypt"), &body).await;
    assert_eq!(status, StatusCode::OK, "{value}");
    let (status, value) = node.post(&policy.path("reencrypt"), &body).await;
    assert_eq!(status, StatusCode::CONFLICT, "{value}");
    assert!(error_of(&value).contains("replayed"));

    for timestamp in [now() - 301 - 5, now() + 400] {
        let body = node.reencrypt_body(&policy, std::slice::from_ref(&capsule), timestamp);
        let (status, value) = node.post(&policy.path("reencrypt"), &body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{value}");
        assert!(error_of(&value).contains("timestamp"));
    }
}

/// The devnet's faulty node: its cfrags fail verification, yet carry the worker's signature, so
/// they make evidence the Adjudicator slashes for (`WrongE`).
#[tokio::test]
async fn a_faulty_node_signs_wrong_cfrags_that_are_provably_wrong() {
    let directory = Arc::new(FakeDirectory::default());
    let node = Node::start_with(directory, kms_node::Behaviour::WrongCFrags);
    let policy = Policy::new(0x66, 1, 1);
    node.create_policy(&policy, vec![node.staker]);
    let (status, value) = node
        .post(
            &policy.path("kfrag"),
            &policy.upload(0, &node.umbral_pk, node.staker),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{value}");
    let (capsule, _) = encrypt(&policy.delegating.public_key(), b"secret").unwrap();
    let body = node.reencrypt_body(&policy, std::slice::from_ref(&capsule), now());
    let (status, value) = node.post(&policy.path("reencrypt"), &body).await;
    assert_eq!(status, StatusCode::OK, "{value}");
    let response: ReencryptResponse = serde_json::from_value(value).unwrap();
    let answer = &response.cfrags[0];
    let cfrag = CapsuleFrag::from_bytes(&decode_b64("cfrag", &answer.cfrag).unwrap()).unwrap();
    let signature = decode_hex("signature", &answer.signature).unwrap();
    let context = answer_context(node.staker, policy.id, answer.period);
    assert_eq!(
        recover_answer_signer(
            &context,
            &capsule.to_bytes_simple(),
            &cfrag.to_bytes_simple(),
            &signature
        )
        .unwrap(),
        node.worker
    );
    assert!(cfrag
        .clone()
        .verify(
            &capsule,
            &policy.signer.public_key(),
            &policy.delegating.public_key(),
            &policy.bob.public_key(),
        )
        .is_err());
    let signer = ethereum_address(&policy.signer.public_key());
    let evidence = kms_crypto::Evidence::for_wrong_cfrag(
        &capsule,
        &cfrag,
        &policy.delegating.public_key(),
        &policy.bob.public_key(),
        signer,
        &context,
        &signature,
    )
    .unwrap();
    let outcome = evidence.outcome(&kms_crypto::evidence::ChainFacts {
        chain_id: CHAIN_ID,
        adjudicator: ADJUDICATOR,
        current_period: answer.period,
        evidence_window: 14,
        kfrag_signer: signer,
        worker: node.worker,
        bond: kms_crypto::evidence::WorkerBond::open(node.staker, answer.period),
    });
    assert_eq!(
        outcome.verdict(),
        Some(kms_crypto::Verdict::WrongE),
        "{outcome:?}"
    );
}

/// Property test of every endpoint's decoding: random bytes, random JSON built from the right
/// field names with random values (including valid encodings with flipped bits), and valid bodies
/// truncated or with flipped bytes. Whatever arrives, the node answers with a 2xx or a 4xx that
/// carries a reason, never a 5xx, and never panics (a panic would fail the test).
#[test]
fn no_request_body_makes_the_node_fail() {
    use proptest::{
        prelude::*,
        test_runner::{Config, RngAlgorithm, TestRng, TestRunner},
    };

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (node, policy, capsule) = runtime.block_on(node_with_policy());
    let valid_reencrypt = node.reencrypt_body(&policy, std::slice::from_ref(&capsule), now());
    let valid_upload = policy.upload(0, &node.umbral_pk, node.staker);
    let capsule_bytes = capsule.to_bytes().unwrap().into_vec();
    let paths = vec![
        policy.path("reencrypt"),
        policy.path("kfrag"),
        format!("/v1/policies/0x{}/reencrypt", "ab".repeat(16)),
        "/v1/policies/not-hex/kfrag".to_owned(),
    ];

    // A JSON value that is sometimes of the right shape and sometimes not.
    let value = prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        ".{0,40}".prop_map(|s| json!(s)),
        prop::collection::vec(any::<u8>(), 0..120).prop_map(|b| json!(encode_b64(&b))),
        prop::collection::vec(any::<u8>(), 0..70)
            .prop_map(|b| json!(alloy::hex::encode_prefixed(b))),
        (0..capsule_bytes.len() * 8).prop_map({
            let capsule_bytes = capsule_bytes.clone();
            move |bit| {
                let mut b = capsule_bytes.clone();
                b[bit / 8] ^= 1 << (bit % 8);
                json!(encode_b64(&b))
            }
        }),
    ];
    let field_names = prop::sample::select(vec![
        "capsules",
        "timestamp",
        "nonce",
        "signature",
        "capsule",
        "ciphertext",
        "delegatingKey",
        "receivingKey",
        "verifyingKey",
        "other",
    ]);
    // A valid body with each field kept or replaced by a random value: reaches every field's
    // decoding behind the ones that are still valid.
    let valid_bodies = vec![valid_reencrypt.clone(), valid_upload.clone()];
    let field_wise = (
        prop::sample::select(valid_bodies),
        prop::collection::vec((any::<bool>(), value.clone()), 5),
    )
        .prop_map(|(mut body, replacements)| {
            if let Value::Object(fields) = &mut body {
                for ((_, field), (replace, random)) in fields.iter_mut().zip(replacements) {
                    if replace {
                        *field = random;
                    }
                }
            }
            body.to_string().into_bytes()
        });
    let structured = prop::collection::vec(
        (
            field_names,
            prop_oneof![
                value.clone(),
                prop::collection::vec(value, 0..4).prop_map(Value::Array),
            ],
        ),
        0..8,
    )
    .prop_map(|fields| {
        Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()).to_string()
    })
    .prop_map(String::into_bytes);
    let valid_texts = vec![
        valid_reencrypt.to_string().into_bytes(),
        valid_upload.to_string().into_bytes(),
    ];
    let mutated = (
        prop::sample::select(valid_texts),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(mut text, flips, cut, truncate)| {
            for (at, byte) in flips {
                let i = at.index(text.len());
                text[i] = byte;
            }
            if truncate {
                text.truncate(cut.index(text.len() + 1));
            }
            text
        });
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        structured,
        mutated,
        field_wise,
    ];

    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: 768,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    runner
        .run(&(prop::sample::select(paths), body), |(path, body)| {
            let (status, value, text) =
                runtime.block_on(node.request("POST", &path, Body::from(body)));
            prop_assert!(!status.is_server_error(), "{path}: {status} {text}");
            if !status.is_success() {
                prop_assert!(
                    value["error"].as_str().is_some_and(|e| !e.is_empty()),
                    "{path}: {status} without a reason: {text}"
                );
            }
            Ok(())
        })
        .unwrap();
    // The node still serves.
    let fresh = node.reencrypt_body(&policy, std::slice::from_ref(&capsule), now() + 1);
    let (status, value) = runtime.block_on(node.post(&policy.path("reencrypt"), &fresh));
    assert_eq!(status, StatusCode::OK, "{value}");
}

/// Puts `policy` on the fake chain naming `node` alone, and uploads its kfrag.
async fn with_kfrag(node: &Node, policy: &Policy) -> Capsule {
    node.create_policy(policy, vec![node.staker]);
    let (status, value) = node
        .post(
            &policy.path("kfrag"),
            &policy.upload(0, &node.umbral_pk, node.staker),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{value}");
    encrypt(&policy.delegating.public_key(), b"hello")
        .unwrap()
        .0
}

/// Review finding 6: one policy's Bob sending more requests than the replay guard's quota is
/// refused alone (429 with a Retry-After, never 503), the other policy is still served, and a
/// replay is still a replay (409) for both.
#[tokio::test]
async fn a_flooding_policy_is_limited_alone_and_replays_stay_refused() {
    const QUOTA: usize = 4;
    let limits = Limits {
        max_remembered_per_policy: QUOTA,
        ..test_limits()
    };
    let node = Node::start_with_limits(Arc::default(), kms_node::Behaviour::Honest, limits);
    let (flooder, other) = (Policy::new(0x10, 1, 1), Policy::new(0x20, 1, 1));
    let flooder_capsule = with_kfrag(&node, &flooder).await;
    let other_capsule = with_kfrag(&node, &other).await;

    let (mut flooder_first, mut other_first) = (None, None);
    for i in 0..3 * QUOTA {
        let body = node.reencrypt_body(&flooder, std::slice::from_ref(&flooder_capsule), now());
        let (status, headers, value) = node.post_full(&flooder.path("reencrypt"), &body).await;
        if i < QUOTA {
            assert_eq!(status, StatusCode::OK, "request {i}: {value}");
        } else {
            assert_eq!(
                status,
                StatusCode::TOO_MANY_REQUESTS,
                "request {i}: {value}"
            );
            assert!(error_of(&value).contains("quota"), "{value}");
            let retry_after: u64 = headers[header::RETRY_AFTER]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            // Its requests are remembered for the 300 s clock window (in 5 s buckets).
            assert!((1..=305).contains(&retry_after), "{retry_after}");
        }
        flooder_first.get_or_insert(body);
        // Meanwhile the other policy is served, within its own quota.
        if i < QUOTA - 1 {
            let body = node.reencrypt_body(&other, std::slice::from_ref(&other_capsule), now());
            let (status, value) = node.post(&other.path("reencrypt"), &body).await;
            assert_eq!(status, StatusCode::OK, "other policy, request {i}: {value}");
            other_first.get_or_insert(body);
        }
    }
    for (policy, body) in [(&flooder, flooder_first), (&other, other_first)] {
        let (status, value) = node.post(&policy.path("reencrypt"), &body.unwrap()).await;
        assert_eq!(status, StatusCode::CONFLICT, "{value}");
        assert!(error_of(&value).contains("replayed"));
    }
}

/// Review finding 7: the signature covers the raw capsule bytes and is checked before any
/// capsule is decoded (decoding verifies a capsule: curve arithmetic for anyone's junk).
#[tokio::test]
async fn the_signature_is_checked_before_any_capsule_is_decoded() {
    let (node, policy, _) = node_with_policy().await;
    let garbage: Vec<Vec<u8>> = (0..64u8).map(|i| vec![i; 98]).collect();
    let mallory = SecretKey::random();
    let body = node.signed_request(&mallory, policy.id, &garbage, now());
    let (status, value) = node.post(&policy.path("reencrypt"), &body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{value}");
    assert!(error_of(&value).contains("signature"), "{value}");

    // Signed by Bob, the same bytes are refused as capsules.
    let body = node.signed_request(&policy.bob, policy.id, &garbage, now());
    let (status, value) = node.post(&policy.path("reencrypt"), &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{value}");
    assert!(error_of(&value).contains("capsules[0]"), "{value}");
}

/// Review finding 7: an upload for a policy the chain does not know costs one chain call; the
/// same id again within `unknown_policy_ttl` is answered from memory (with a Retry-After).
#[tokio::test]
async fn an_unknown_policy_costs_one_chain_call() {
    let node = Node::start(Arc::default());
    let unknown = Policy::new(0x55, 1, 1);
    for _ in 0..3 {
        let (status, headers, value) = node
            .post_full(
                &unknown.path("kfrag"),
                &unknown.upload(0, &node.umbral_pk, node.staker),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{value}");
        assert!(error_of(&value).contains("no such policy"));
        assert!(headers.contains_key(header::RETRY_AFTER));
    }
    assert_eq!(node.directory.signer_calls(), 1);

    // Without the cache, every upload asks the chain.
    let uncached = Node::start_with_limits(
        Arc::default(),
        kms_node::Behaviour::Honest,
        Limits {
            unknown_policy_ttl: Duration::ZERO,
            ..test_limits()
        },
    );
    for _ in 0..2 {
        let (status, value) = uncached
            .post(
                &unknown.path("kfrag"),
                &unknown.upload(0, &uncached.umbral_pk, uncached.staker),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{value}");
    }
    assert_eq!(uncached.directory.signer_calls(), 2);
}

/// Review finding 7: kfrag uploads are rate-limited per client address: a client past its burst
/// gets 429 with a reason and a Retry-After, another address is still served.
#[tokio::test]
async fn uploads_are_rate_limited_per_client_address() {
    const BURST: u32 = 3;
    let node = Node::start_with_limits(
        Arc::default(),
        kms_node::Behaviour::Honest,
        Limits {
            kfrag_upload_burst: BURST,
            // No refill: the test does not depend on how fast it runs.
            kfrag_uploads_per_minute: 0,
            ..Limits::default()
        },
    );
    let policy = Policy::new(0x77, 1, 1);
    node.create_policy(&policy, vec![node.staker]);
    let upload = || Body::from(policy.upload(0, &node.umbral_pk, node.staker).to_string());
    let greedy: SocketAddr = "192.0.2.1:40000".parse().unwrap();
    let patient: SocketAddr = "198.51.100.7:40000".parse().unwrap();
    for i in 0..BURST {
        let (status, _, value, _) = node
            .request_from(Some(greedy), "POST", &policy.path("kfrag"), upload())
            .await;
        assert!(status.is_success(), "upload {i}: {status} {value}");
    }
    // Another port of the same address is the same client.
    let same_host: SocketAddr = "192.0.2.1:40001".parse().unwrap();
    for peer in [greedy, same_host] {
        let (status, headers, value, _) = node
            .request_from(Some(peer), "POST", &policy.path("kfrag"), upload())
            .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{value}");
        assert!(
            error_of(&value).contains("too many kfrag uploads"),
            "{value}"
        );
        assert!(headers.contains_key(header::RETRY_AFTER));
    }
    let (status, _, value, _) = node
        .request_from(Some(patient), "POST", &policy.path("kfrag"), upload())
        .await;
    assert_eq!(status, StatusCode::OK, "{value}");
    // Requests without a peer address are one client of their own.
    let (status, value, _) = node.request("POST", &policy.path("kfrag"), upload()).await;
    assert_eq!(status, StatusCode::OK, "{value}");
}

/// Review finding 9: a chain error's text (an RPC client's includes the endpoint's URL, often
/// with an API key) is logged, never sent: the answer is a generic 503.
#[tokio::test]
async fn chain_errors_do_not_leak_the_rpc_url() {
    const HOST: &str = "eth-mainnet.example.com";
    const SECRET: &str = "SECRET-API-KEY-4242";
    let (node, policy, capsule) = node_with_policy().await;
    node.directory.fail_with(Some(format!(
        "error sending request for url (https://{HOST}/v2/{SECRET}): operation timed out"
    )));
    let fresh = Policy::new(0x31, 1, 1);
    let path = fresh.path("kfrag");
    let body = fresh.upload(0, &node.umbral_pk, node.staker);
    let (status, value, text) = node
        .request("POST", &path, Body::from(body.to_string()))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {text}");
    assert!(
        !text.contains(SECRET) && !text.contains(HOST),
        "{path}: {text}"
    );
    assert!(error_of(&value).contains("retry later"), "{text}");
    // A re-encryption asks the chain nothing: served while the chain is unreachable (within the
    // head view's bound).
    node.reencrypt_ok(&policy, std::slice::from_ref(&capsule))
        .await;
}

/// Review finding 8: a body that does not arrive within `body_read_timeout` is answered 408.
#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_408() {
    let node = Node::start_with_limits(
        Arc::default(),
        kms_node::Behaviour::Honest,
        Limits {
            body_read_timeout: Duration::from_millis(200),
            ..test_limits()
        },
    );
    let never = futures_util::stream::pending::<Result<Vec<u8>, std::io::Error>>();
    let policy = Policy::new(0x42, 1, 1);
    // Bounded: without the body deadline the request would wait forever.
    let (status, value, text) = tokio::time::timeout(
        Duration::from_secs(30),
        node.request("POST", &policy.path("kfrag"), Body::from_stream(never)),
    )
    .await
    .expect("the node never answered a request whose body does not come");
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{text}");
    assert!(error_of(&value).contains("not received"), "{text}");
}
