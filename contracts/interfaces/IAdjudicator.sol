// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

/// @title IAdjudicator
/// @notice Verifies on chain a re-encryption a node answered with, and slashes the node's staker
/// when the re-encryption is wrong. The wire formats are umbral-pre 0.11's own: see docs/adjudicator.md.
interface IAdjudicator {
    /// @notice An affine secp256k1 point.
    struct Point {
        uint256 x;
        uint256 y;
    }

    /// @notice What an investigator submits: the node's signed answer and the data to check it.
    /// @dev `ys` gives the y coordinates of the points that `capsule` and `cfrag` carry compressed, in
    /// this order: E, V (capsule), E1, V1, E2, V2, U1, U2 (cfrag). The six products are the ones of
    /// umbral-pre's `ReencryptionEvidence` (`z*E, h*E1, z*V, h*V1, z*U, h*U1`).
    struct Evidence {
        bytes16 policyId;
        address staker; // the stake the answer names (the node's staker)
        uint256 period; // the period the answer names (the one it was given in)
        bytes capsule; // Capsule::to_bytes_simple: E (33) | V (33) | signature (32) = 98 bytes
        bytes cfrag; // CapsuleFrag::to_bytes_simple: 359 bytes
        bytes delegatingKey; // Alice's delegating public key, compressed (33 bytes)
        bytes receivingKey; // Bob's public key, compressed (33 bytes)
        uint256[8] ys;
        Point ez;
        Point e1h;
        Point vz;
        Point v1h;
        Point uz;
        Point u1h;
        bool kfragSignatureV; // recovery bit of the kfrag signature (true: odd y)
        bytes workerSignature; // 65 bytes r | s | v (27/28): EIP-191 signature of the answer digest
    }

    /// @notice Step one of reporting: records `commitment` with the current block. The commitment
    /// is `evidenceCommitment(evidenceHash, investigator)` to reveal with `evaluateCFrag`, or
    /// `evidenceCommitmentFor(evidenceHash, submitter, beneficiary)` to reveal with
    /// `evaluateCFragFor`. Only the committed sender can reveal the evidence, from a later block,
    /// and only for the committed beneficiary, so a copy of the reveal seen in the mempool pays
    /// nobody else. Committing again keeps the earliest block.
    function commitEvidence(bytes32 commitment) external;

    /// @notice Step two: evaluates `evidence` once, and slashes the named staker if its node's
    /// re-encryption is wrong, paying the caller the investigator's reward.
    /// Requirements: the caller committed to this evidence in an earlier block; the answer's period
    /// has started and is at most `evidenceWindow` periods old; the answer's signer was bonded to
    /// the named staker in that period; when the cfrag is wrong, the caller is neither that staker
    /// nor its worker (then or now).
    function evaluateCFrag(Evidence calldata evidence) external;

    /// @notice Step two, paying someone else: evaluates `evidence` once, like `evaluateCFrag`, and
    /// if the node's re-encryption is wrong pays the investigator's reward (`penalty /
    /// rewardCoefficient`) to `beneficiary`, not to the caller. For a node's worker key reporting
    /// on behalf of its staker, or a relay paying the gas of someone else's reward. The event's
    /// `investigator` is `beneficiary`.
    /// Requirements: `beneficiary` is not the zero address (checked first); the caller committed
    /// `evidenceCommitmentFor(evidenceHash, caller, beneficiary)` in an earlier block (a commitment
    /// naming another sender or another beneficiary, or made with `evidenceCommitment`, does not
    /// count); the answer's period has started and is at most `evidenceWindow` periods old; the
    /// answer's signer was bonded to the named staker in that period; when the cfrag is wrong,
    /// neither the caller nor `beneficiary` is that staker or its worker (then or now).
    /// @param evidence The node's signed answer and the data to check it, as for `evaluateCFrag`.
    /// @param beneficiary The account paid the investigator's reward.
    function evaluateCFragFor(Evidence calldata evidence, address beneficiary) external;
}
