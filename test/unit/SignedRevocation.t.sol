// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

import {PolicyManager} from "../../contracts/PolicyManager.sol";
import {Errors} from "../../contracts/libraries/Errors.sol";
import {PolicyFixture} from "../utils/PolicyFixture.sol";

/// @notice `revokeBySignature`: a revocation order Alice signs (EIP-712), carried out by anyone,
/// exactly as her own revocation. The digest is recomputed here from the EIP-712 rules alone, and
/// checked against a vector signed by another implementation (cast's typed-data signer), the one
/// docs/client.md gives.
contract SignedRevocationTest is PolicyFixture {
    bytes32 internal constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 internal constant TYPEHASH =
        keccak256("Revocation(bytes16 policyId,address node,uint64 deadline)");
    /// @dev secp256k1's group order: `n - s` is the high-`s` twin of a signature.
    uint256 internal constant SECP256K1_N =
        0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;

    address internal relayer = makeAddr("relayer");
    uint64 internal deadline;

    function setUp() public override {
        super.setUp();
        deadline = uint64(block.timestamp + 1 hours);
    }

    /// @dev The EIP-712 digest of a revocation order, from the specification alone.
    function digestOf(
        bytes16 policyId,
        address node,
        uint64 deadline_,
        uint256 chainId,
        address verifyingContract
    ) internal pure returns (bytes32) {
        bytes32 domainSeparator = keccak256(
            abi.encode(
                DOMAIN_TYPEHASH, keccak256("KMS PolicyManager"), keccak256("1"), chainId, verifyingContract
            )
        );
        bytes32 structHash = keccak256(abi.encode(TYPEHASH, policyId, node, deadline_));
        return keccak256(abi.encodePacked("\x19\x01", domainSeparator, structHash));
    }

    function sign(uint256 key, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, digest);
        return abi.encodePacked(r, s, v);
    }

    /// @dev Alice's order to revoke `node`'s arrangement of `ID` (zero: the whole policy).
    function order(address node) internal view returns (bytes memory) {
        return sign(ALICE_KEY, digestOf(ID, node, deadline, block.chainid, address(policyManager)));
    }

    function revokeBySignature(address node, bytes memory signature) internal returns (uint256) {
        vm.prank(relayer);
        return policyManager.revokeBySignature(ID, node, deadline, nodes, signature);
    }

    function expectInvalidSignature(bytes memory signature, bytes32 digest) internal {
        address recovered;
        if (signature.length == 65) {
            (bytes32 r, bytes32 s) = abi.decode(signature, (bytes32, bytes32));
            recovered = ecrecover(digest, uint8(signature[64]), r, s);
        }
        vm.expectRevert(
            abi.encodeWithSelector(Errors.PolicyManager_InvalidSignature.selector, recovered, alice)
        );
    }

    /*//////////////////////////////////////////////////////////////
                               THE DOMAIN
    //////////////////////////////////////////////////////////////*/

    function test_Eip712Domain() public view {
        (
            bytes1 fields,
            string memory name,
            string memory version,
            uint256 chainId,
            address verifyingContract,
            bytes32 salt,
            uint256[] memory extensions
        ) = policyManager.eip712Domain();
        assertEq(uint256(uint8(fields)), 0x0f, "name, version, chainId, verifyingContract");
        assertEq(name, "KMS PolicyManager");
        assertEq(version, "1");
        assertEq(chainId, block.chainid);
        assertEq(verifyingContract, address(policyManager));
        assertEq(salt, bytes32(0));
        assertEq(extensions.length, 0);
        assertEq(policyManager.REVOCATION_TYPEHASH(), TYPEHASH);
    }

    function test_RevocationTypedDataHash_IsTheEip712Digest() public view {
        assertEq(
            policyManager.revocationTypedDataHash(ID, nodeB, deadline),
            digestOf(ID, nodeB, deadline, block.chainid, address(policyManager))
        );
        assertEq(
            policyManager.revocationTypedDataHash(ID, address(0), deadline),
            digestOf(ID, address(0), deadline, block.chainid, address(policyManager))
        );
    }

    /// The vector of docs/client.md: the digests, and the signatures `cast wallet sign --data` makes
    /// of the typed data with anvil's second dev key (owner 0x70997970…), for the contract at
    /// 0x9fE46736… on chain 31337.
    function test_RevocationTypedDataHash_MatchesTheDocumentedVector() public {
        address verifyingContract = 0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0;
        uint256 ownerKey = 0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d;
        bytes16 policyId = 0x5f0c8a4d0e2b1c3d4e5f60718293a4b5;
        address node = 0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC;
        uint64 vectorDeadline = 1_767_225_600;
        bytes32 wholePolicy = 0x821fd2681af625fdee4c3d17a1ff9f84fe0f296816a4001e1dcc2aa26e44f0bd;
        bytes32 arrangement = 0x02915539f4ded432235e96f313112b08c9b4ac87969a77db2345b1154e36b7fc;

        vm.chainId(31337);
        vm.etch(verifyingContract, address(policyManager).code);
        PolicyManager deployed = PolicyManager(verifyingContract);
        assertEq(deployed.revocationTypedDataHash(policyId, address(0), vectorDeadline), wholePolicy);
        assertEq(deployed.revocationTypedDataHash(policyId, node, vectorDeadline), arrangement);
        assertEq(digestOf(policyId, address(0), vectorDeadline, 31337, verifyingContract), wholePolicy);

        assertEq(vm.addr(ownerKey), 0x70997970C51812dc3A010C7d01b50e0d17dc79C8);
        assertEq(
            sign(ownerKey, wholePolicy),
            hex"6ed62ced21e2e8022d50f694ceb3994d38170a60fefd12e1ba7c21016d0e732d5f1149bc564729de6d79cf72ca2bee86fcdc689d93899c8bd05549e930df78e31b"
        );
        assertEq(
            sign(ownerKey, arrangement),
            hex"2a7a698aae4acd0d7b0119b6a255bbc7162697ff046fe176bd51085bf9f74f0c47b069e542f399b9b8579f84c11fafa46c0e0a2c9887a9e5c3f3761e97b3b4cc1c"
        );
    }

    /*//////////////////////////////////////////////////////////////
                               REVOCATION
    //////////////////////////////////////////////////////////////*/

    function test_RevokeBySignature_WholePolicy() public {
        create(10);
        commitAll();
        uint256 expected = 3 * 9 * RATE;
        vm.expectEmit(address(policyManager));
        emit PolicyManager.PolicyRevoked(ID, alice, expected);
        assertEq(revokeBySignature(address(0), order(address(0))), expected);
        assertEq(alice.balance, expected, "the refund goes to the owner");
        assertEq(relayer.balance, 0, "and not to the caller");
        assertTrue(policyManager.getPolicy(ID).revoked);
        assertFalse(policyManager.isArrangementActive(ID, nodeA, nodes));
        _assertConserved(pay(10));
    }

    function test_RevokeBySignature_Arrangement() public {
        create(10);
        commitAll();
        vm.expectEmit(address(policyManager));
        emit PolicyManager.ArrangementRevoked(ID, nodeB, 9 * RATE);
        assertEq(revokeBySignature(nodeB, order(nodeB)), 9 * RATE);
        assertEq(alice.balance, 9 * RATE);
        assertEq(relayer.balance, 0);
        assertFalse(policyManager.isArrangementActive(ID, nodeB, nodes));
        assertTrue(policyManager.isArrangementActive(ID, nodeA, nodes));
        assertFalse(policyManager.getPolicy(ID).revoked);
    }

    /// The same state after Alice's own revocation and after her signed order: refunds, the
    /// policy, and each node's fee accounting.
    function test_RevokeBySignature_IsTheOwnersOwnRevocation() public {
        create(10);
        commitAll();
        advancePeriods(1);
        commit(nodeA);
        deadline = uint64(block.timestamp + 1 hours);
        uint256 snapshot = vm.snapshotState();

        vm.prank(alice);
        uint256 own = policyManager.revokePolicy(ID, nodes);
        bytes32 ownState = stateHash();
        vm.revertToState(snapshot);
        assertEq(revokeBySignature(address(0), order(address(0))), own);
        assertEq(stateHash(), ownState, "the whole-policy order left another state");

        vm.revertToState(snapshot);
        vm.prank(alice);
        own = policyManager.revokeArrangement(ID, nodeC, nodes);
        ownState = stateHash();
        vm.revertToState(snapshot);
        assertEq(revokeBySignature(nodeC, order(nodeC)), own);
        assertEq(stateHash(), ownState, "the arrangement order left another state");
    }

    function stateHash() internal view returns (bytes32) {
        return keccak256(
            abi.encode(
                policyManager.getPolicy(ID),
                policyManager.getNodeInfo(nodeA),
                policyManager.getNodeInfo(nodeB),
                policyManager.getNodeInfo(nodeC),
                policyManager.arrangementRevoked(ID, nodeC),
                alice.balance,
                address(policyManager).balance
            )
        );
    }

    function test_RevokeBySignature_UntilTheDeadline() public {
        create(10);
        vm.warp(deadline);
        revokeBySignature(address(0), order(address(0)));
        assertTrue(policyManager.getPolicy(ID).revoked);
    }

    /// An order signed before an extension revokes the extended policy, refunding the extension too.
    function test_RevokeBySignature_AfterAnExtension() public {
        create(4);
        bytes memory signature = order(address(0));
        vm.deal(alice, pay(6));
        vm.prank(alice);
        policyManager.extendPolicy{value: pay(6)}(ID, endAfter(10), nodes);
        commitAll();
        assertEq(revokeBySignature(address(0), signature), 3 * 9 * RATE);
        _assertConserved(pay(10));
    }

    /*//////////////////////////////////////////////////////////////
                                REVERTS
    //////////////////////////////////////////////////////////////*/

    function test_RevertWhen_OrderExpired() public {
        create(10);
        bytes memory signature = order(address(0));
        vm.warp(uint256(deadline) + 1);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.PolicyManager_SignatureExpired.selector, deadline, uint256(deadline) + 1
            )
        );
        revokeBySignature(address(0), signature);
    }

    function test_RevertWhen_OrderSignedByAnotherKey() public {
        create(10);
        bytes32 digest = digestOf(ID, address(0), deadline, block.chainid, address(policyManager));
        uint256 malloryKey = uint256(keccak256("mallory"));
        vm.expectRevert(
            abi.encodeWithSelector(Errors.PolicyManager_InvalidSignature.selector, vm.addr(malloryKey), alice)
        );
        revokeBySignature(address(0), sign(malloryKey, digest));

        // Nor by the node whose arrangement it revokes, nor by the policy's kfrag signer.
        bytes32 arrangement = digestOf(ID, nodeB, deadline, block.chainid, address(policyManager));
        uint256 nodeKey = uint256(keccak256("node-b"));
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_InvalidSignature.selector, nodeB, alice));
        revokeBySignature(nodeB, sign(nodeKey, arrangement));
        uint256 signerKey = uint256(keccak256("signer"));
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_InvalidSignature.selector, signer, alice));
        revokeBySignature(address(0), sign(signerKey, digest));
    }

    /// The creator (who paid) is not the owner: only the owner's orders count, as only the owner
    /// may revoke.
    function test_RevertWhen_OrderSignedByTheCreatorNotTheOwner() public {
        address sponsor = makeAddr("sponsor");
        vm.deal(sponsor, pay(10));
        vm.prank(sponsor);
        bytes16 id = policyManager.createPolicy{value: pay(10)}(SALT, alice, signer, endAfter(10), nodes);
        bytes memory signature = sign(
            uint256(keccak256("sponsor")),
            digestOf(id, address(0), deadline, block.chainid, address(policyManager))
        );
        vm.expectRevert(
            abi.encodeWithSelector(Errors.PolicyManager_InvalidSignature.selector, sponsor, alice)
        );
        policyManager.revokeBySignature(id, address(0), deadline, nodes, signature);
    }

    function test_RevertWhen_OrderForAnotherChain() public {
        create(10);
        bytes memory signature =
            sign(ALICE_KEY, digestOf(ID, address(0), deadline, 1, address(policyManager)));
        expectInvalidSignature(signature, policyManager.revocationTypedDataHash(ID, address(0), deadline));
        revokeBySignature(address(0), signature);

        // An order signed here is void once the chain id differs (a fork): the domain follows it.
        bytes memory here = order(address(0));
        vm.chainId(5);
        expectInvalidSignature(here, policyManager.revocationTypedDataHash(ID, address(0), deadline));
        revokeBySignature(address(0), here);
    }

    function test_RevertWhen_OrderForAnotherContract() public {
        create(10);
        PolicyManager other =
            new PolicyManager(escrow, governor, MIN_FEE_RATE, DEFAULT_FEE_RATE, MAX_FEE_RATE);
        bytes memory signature = sign(ALICE_KEY, other.revocationTypedDataHash(ID, address(0), deadline));
        expectInvalidSignature(signature, policyManager.revocationTypedDataHash(ID, address(0), deadline));
        revokeBySignature(address(0), signature);
    }

    function test_RevertWhen_OrderUsedForAnotherNodeOrPolicy() public {
        create(10);
        bytes memory forA = order(nodeA);
        expectInvalidSignature(forA, policyManager.revocationTypedDataHash(ID, nodeB, deadline));
        revokeBySignature(nodeB, forA);
        expectInvalidSignature(forA, policyManager.revocationTypedDataHash(ID, address(0), deadline));
        revokeBySignature(address(0), forA);
        bytes memory whole = order(address(0));
        expectInvalidSignature(whole, policyManager.revocationTypedDataHash(ID, nodeA, deadline));
        revokeBySignature(nodeA, whole);

        // Another deadline than the one signed.
        expectInvalidSignature(whole, policyManager.revocationTypedDataHash(ID, address(0), deadline + 1));
        vm.prank(relayer);
        policyManager.revokeBySignature(ID, address(0), deadline + 1, nodes, whole);
    }

    /// A carried-out order cannot be replayed: the policy or the arrangement is revoked.
    function test_RevertWhen_OrderReplayed() public {
        create(10);
        bytes memory forB = order(nodeB);
        revokeBySignature(nodeB, forB);
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_AlreadyRevoked.selector, ID, nodeB));
        revokeBySignature(nodeB, forB);

        bytes memory whole = order(address(0));
        revokeBySignature(address(0), whole);
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_AlreadyRevoked.selector, ID, address(0)));
        revokeBySignature(address(0), whole);
        bytes memory forA = order(nodeA);
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_AlreadyRevoked.selector, ID, address(0)));
        revokeBySignature(nodeA, forA);
        assertEq(alice.balance, pay(10), "refunded once");
    }

    function test_RevertWhen_OrderNamesANodeNotInThePolicy() public {
        create(10);
        address stranger = makeAddr("stranger");
        bytes memory signature = order(stranger);
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_NodeNotInPolicy.selector, ID, stranger));
        revokeBySignature(stranger, signature);
    }

    function test_RevertWhen_SignatureMalformed() public {
        create(10);
        bytes32 digest = policyManager.revocationTypedDataHash(ID, address(0), deadline);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(ALICE_KEY, digest);

        bytes memory short = abi.encodePacked(r, s);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.PolicyManager_InvalidSignature.selector, address(0), alice)
        );
        revokeBySignature(address(0), short);

        // The high-`s` twin recovers Alice through `ecrecover`, but is refused.
        bytes memory highS =
            abi.encodePacked(r, bytes32(SECP256K1_N - uint256(s)), v == 27 ? uint8(28) : uint8(27));
        assertEq(ecrecover(digest, uint8(highS[64]), r, bytes32(SECP256K1_N - uint256(s))), alice);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.PolicyManager_InvalidSignature.selector, address(0), alice)
        );
        revokeBySignature(address(0), highS);

        bytes memory badV = abi.encodePacked(r, s, v - 27);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.PolicyManager_InvalidSignature.selector, address(0), alice)
        );
        revokeBySignature(address(0), badV);
    }

    function test_RevertWhen_RevokeBySignatureAfterTheEndOrUnknownOrWrongNodes() public {
        create(2);
        bytes memory whole = order(address(0));
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_NodesMismatch.selector, ID));
        vm.prank(relayer);
        policyManager.revokeBySignature(ID, address(0), deadline, list(nodeA), whole);

        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_PolicyNotFound.selector, bytes16("nope")));
        policyManager.revokeBySignature(bytes16("nope"), address(0), deadline, nodes, whole);

        uint256 end = endAfter(2);
        deadline = uint64(end + 1 hours);
        whole = order(address(0));
        vm.warp(end);
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_PolicyEnded.selector, ID, end));
        revokeBySignature(address(0), whole);
    }
}
