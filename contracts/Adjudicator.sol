// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";

import {IAdjudicator} from "./interfaces/IAdjudicator.sol";
import {IPolicyManager} from "./interfaces/IPolicyManager.sol";
import {IStakingEscrow} from "./interfaces/IStakingEscrow.sol";
import {Errors} from "./libraries/Errors.sol";
import {Secp256k1} from "./libraries/Secp256k1.sol";

/// @title Adjudicator
/// @notice Proves on chain that a node answered a re-encryption request with a wrong cfrag, and
/// slashes the node's staker. The evidence is checked entirely on chain, trusting nothing the
/// investigator supplies:
///
/// 1. the cfrag's kfrag signature recovers the policy's kfrag signer (the cfrag was made from one
///    of Alice's kfrags for this policy and these delegating and receiving keys);
/// 2. the worker's signature over the answer (which names the staker and the period, the chain and
///    this contract) recovers a worker bonded to that staker in that period (the node said this),
///    and the period is at most `evidenceWindow` periods old;
/// 3. every point of the capsule and the cfrag is on the curve and matches its compressed form;
/// 4. the challenge `h` is recomputed as umbral-pre's `hash_to_cfrag_verification`;
/// 5. the six precomputed products are checked with the `ecrecover` trick (a product that matches
///    the recovered address is on the curve: anything else would be a keccak collision);
/// 6. the three equations of the re-encryption proof: `z*E == h*E1 + E2`, `z*V == h*V1 + V2`,
///    `z*U == h*U1 + U2`.
///
/// Evidence is reported in two steps (commit, then reveal from a later block) so that only the
/// investigator who found it is paid: the sender of the reveal (`evaluateCFrag`), or the beneficiary
/// it names (`evaluateCFragFor`, whose commitment binds both). The slashed staker and its workers
/// are never paid, nor may they send the reveal.
///
/// Failing 1, 2, 3 or 5 rejects the evidence (custom error, no slash): those are what an
/// investigator could forge. Failing 6 proves the node wrong and its staker is slashed; so does a
/// cfrag whose proof cannot even be checked because the node chose its values so (a zero or
/// out-of-range `z`, or an E1 or V1 beyond `ecrecover`'s range), which an honest node produces with
/// negligible probability. A correct cfrag is recorded as such. Each evidence is evaluated once.
contract Adjudicator is IAdjudicator {
    /*//////////////////////////////////////////////////////////////
                               CONSTANTS
    //////////////////////////////////////////////////////////////*/

    /// @notice umbral-pre 0.11's parameter `U`, compressed, and its y coordinate.
    bytes internal constant U_COMPRESSED =
        hex"03079390d0fbe220fc34aab8ecbf49098098036820fadb98c03143e55db8ec73cd";
    uint256 internal constant U_X = 0x079390d0fbe220fc34aab8ecbf49098098036820fadb98c03143e55db8ec73cd;
    uint256 internal constant U_Y = 0x7ea50b219da86a70e8489413e4b9388afb63ac6f26e5ec2cfdd983b83f0e84e7;

    /// @notice The domain tag of the answer digest a worker signs (see docs/adjudicator.md).
    bytes internal constant ANSWER_TAG = "KMS_CFRAG_ANSWER_V2";

    uint256 internal constant CAPSULE_LENGTH = 98;
    uint256 internal constant CFRAG_LENGTH = 359;
    uint256 internal constant KEY_LENGTH = 33;

    // Offsets in `CapsuleFrag::to_bytes_simple`.
    uint256 internal constant CF_E1 = 0;
    uint256 internal constant CF_V1 = 33;
    uint256 internal constant CF_KFRAG_ID = 66;
    uint256 internal constant CF_PRECURSOR = 98;
    uint256 internal constant CF_E2 = 131;
    uint256 internal constant CF_V2 = 164;
    uint256 internal constant CF_U1 = 197;
    uint256 internal constant CF_U2 = 230;
    uint256 internal constant CF_Z = 263;
    uint256 internal constant CF_KFRAG_R = 295;
    uint256 internal constant CF_KFRAG_S = 327;

    /// @notice Why a cfrag was judged: correct, or which part of the proof failed.
    enum Verdict {
        Correct,
        WrongE, // z*E != h*E1 + E2
        WrongV, // z*V != h*V1 + V2
        WrongU, // z*U != h*U1 + U2
        InvalidZ, // z is zero or not below the group order
        UncheckablePoint // E1 or V1 has x >= the group order (honestly: probability ~2^-128)
    }

    /*//////////////////////////////////////////////////////////////
                          IMMUTABLES AND STORAGE
    //////////////////////////////////////////////////////////////*/

    IStakingEscrow public immutable escrow;
    IPolicyManager public immutable policyManager;

    /// @notice Penalty of a first violation, in token units.
    uint256 public immutable basePenalty;
    /// @notice Added to the penalty for each earlier violation of the same staker.
    uint256 public immutable penaltyHistoryCoefficient;
    /// @notice The penalty is at most `stake / percentagePenaltyCoefficient`.
    uint256 public immutable percentagePenaltyCoefficient;
    /// @notice The investigator (the reveal's beneficiary) receives `penalty / rewardCoefficient`;
    /// the rest is burnt.
    uint256 public immutable rewardCoefficient;

    /// @notice How many periods an answer stays slashable: the escrow's `evidenceWindow`.
    uint256 public immutable evidenceWindow;
    /// @notice The escrow's period length, in seconds.
    uint256 public immutable secondsPerPeriod;

    /// @notice Evidence already evaluated, by `keccak256(capsule || cfrag)`.
    mapping(bytes32 evidenceHash => bool) public evaluated;

    /// @notice The block each pending evidence commitment was made in.
    mapping(bytes32 commitment => uint256 blockNumber) public commitments;

    /// @notice Violations proven against each staker.
    mapping(address staker => uint256) public violations;

    /*//////////////////////////////////////////////////////////////
                                 EVENTS
    //////////////////////////////////////////////////////////////*/

    /// @notice An investigator committed to evidence it will reveal from a later block.
    event EvidenceCommitted(bytes32 indexed commitment, address indexed committer);

    /// @notice A cfrag was evaluated. `verdict` says why; `penalty` and `reward` are zero when it
    /// was correct. `investigator` is the account the reward is paid to (or would have been, for a
    /// correct cfrag): the sender of `evaluateCFrag`, or the beneficiary named to `evaluateCFragFor`
    /// (whose sender is not in the event: it is the transaction's sender).
    event CFragEvaluated(
        bytes32 indexed evidenceHash,
        address indexed staker,
        address indexed investigator,
        bytes16 policyId,
        address worker,
        Verdict verdict,
        uint256 penalty,
        uint256 reward
    );

    /*//////////////////////////////////////////////////////////////
                              CONSTRUCTOR
    //////////////////////////////////////////////////////////////*/

    /// @param escrow_ The staking escrow, which must name this contract its adjudicator.
    /// @param policyManager_ Where the policies' kfrag signers are recorded.
    /// @param basePenalty_ Token units.
    /// @param penaltyHistoryCoefficient_ Token units per earlier violation.
    /// @param percentagePenaltyCoefficient_ Positive: caps the penalty at `stake / coefficient`.
    /// @param rewardCoefficient_ Positive: the investigator gets `penalty / coefficient`.
    constructor(
        IStakingEscrow escrow_,
        IPolicyManager policyManager_,
        uint256 basePenalty_,
        uint256 penaltyHistoryCoefficient_,
        uint256 percentagePenaltyCoefficient_,
        uint256 rewardCoefficient_
    ) {
        if (percentagePenaltyCoefficient_ == 0 || rewardCoefficient_ == 0) {
            revert Errors.Adjudicator_InvalidParameter();
        }
        escrow = escrow_;
        policyManager = policyManager_;
        basePenalty = basePenalty_;
        penaltyHistoryCoefficient = penaltyHistoryCoefficient_;
        percentagePenaltyCoefficient = percentagePenaltyCoefficient_;
        rewardCoefficient = rewardCoefficient_;
        evidenceWindow = escrow_.evidenceWindow();
        secondsPerPeriod = escrow_.secondsPerPeriod();
    }

    /*//////////////////////////////////////////////////////////////
                               EVALUATION
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc IAdjudicator
    function commitEvidence(bytes32 commitment) external override {
        if (commitments[commitment] != 0) return;
        commitments[commitment] = block.number;
        emit EvidenceCommitted(commitment, msg.sender);
    }

    /// @inheritdoc IAdjudicator
    /// @dev Also requires well-formed evidence (lengths, points, products), not evaluated before,
    /// and a known policy whose kfrag signer signed the cfrag's kfrag.
    function evaluateCFrag(Evidence calldata evidence) external override {
        bytes32 evidenceHash = _evidenceHash(evidence);
        _evaluate(evidence, evidenceHash, evidenceCommitment(evidenceHash, msg.sender), msg.sender);
    }

    /// @inheritdoc IAdjudicator
    /// @dev Also requires well-formed evidence (lengths, points, products), not evaluated before,
    /// and a known policy whose kfrag signer signed the cfrag's kfrag.
    function evaluateCFragFor(Evidence calldata evidence, address beneficiary) external override {
        if (beneficiary == address(0)) revert Errors.Adjudicator_ZeroBeneficiary();
        bytes32 evidenceHash = _evidenceHash(evidence);
        _evaluate(
            evidence, evidenceHash, evidenceCommitmentFor(evidenceHash, msg.sender, beneficiary), beneficiary
        );
    }

    /// @notice The penalty and investigator reward a violation by `staker` would carry now.
    function penaltyFor(address staker) external view returns (uint256 penalty, uint256 reward) {
        return _penalty(staker);
    }

    /// @notice The commitment an investigator makes before revealing evidence:
    /// `keccak256(abi.encode(evidenceHash, investigator))`, with `evidenceHash =
    /// keccak256(capsule || cfrag)` of the evidence's simple bytes.
    function evidenceCommitment(bytes32 evidenceHash, address investigator) public pure returns (bytes32) {
        return keccak256(abi.encode(evidenceHash, investigator));
    }

    /// @notice The commitment a submitter makes before revealing evidence with `evaluateCFragFor`:
    /// `keccak256(abi.encode(evidenceHash, submitter, beneficiary))` (96 bytes hashed), with
    /// `evidenceHash = keccak256(capsule || cfrag)` of the evidence's simple bytes. It binds both
    /// the account that will send the reveal and the account the reward goes to. It never equals an
    /// `evidenceCommitment` (64 bytes hashed), so each commitment is revealed through its own function.
    /// @param evidenceHash `keccak256(capsule || cfrag)`.
    /// @param submitter The account that will call `evaluateCFragFor` (`msg.sender` of the reveal).
    /// @param beneficiary The account the reveal names to receive the investigator's reward.
    function evidenceCommitmentFor(bytes32 evidenceHash, address submitter, address beneficiary)
        public
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(evidenceHash, submitter, beneficiary));
    }

    /// @notice The digest a worker signs (EIP-191) for each cfrag it answers with: the answer names
    /// the chain, this contract, the staker answering and the period it answers in.
    function answerDigest(
        address staker,
        uint256 period,
        bytes16 policyId,
        bytes calldata capsule,
        bytes calldata cfrag
    ) public view returns (bytes32) {
        return keccak256(
            abi.encodePacked(
                ANSWER_TAG, block.chainid, address(this), staker, period, policyId, capsule, cfrag
            )
        );
    }

    /*//////////////////////////////////////////////////////////////
                                INTERNAL
    //////////////////////////////////////////////////////////////*/

    /// @dev One evaluation, whichever function revealed it: `commitment` is the reveal's own (it
    /// names the sender, and the beneficiary when one is named), and `beneficiary` is paid.
    function _evaluate(
        Evidence calldata evidence,
        bytes32 evidenceHash,
        bytes32 commitment,
        address beneficiary
    ) internal {
        if (evaluated[evidenceHash]) {
            revert Errors.Adjudicator_AlreadyEvaluated(evidenceHash);
        }
        _consumeCommitment(commitment);
        _checkPeriod(evidence.period);

        _checkKfragSignature(evidence);
        address worker = _answeringWorker(evidence);
        address staker = evidence.staker;
        _checkPoints(evidence);
        Verdict verdict = _verify(evidence);

        evaluated[evidenceHash] = true;
        if (verdict == Verdict.Correct) {
            emit CFragEvaluated(evidenceHash, staker, beneficiary, evidence.policyId, worker, verdict, 0, 0);
            return;
        }
        // The culprit reporting itself, or naming itself to be paid, would get part of its own
        // penalty back.
        address currentWorker = escrow.workerOf(staker);
        if (msg.sender == staker || msg.sender == worker || msg.sender == currentWorker) {
            revert Errors.Adjudicator_InvestigatorIsCulprit(msg.sender);
        }
        // (The beneficiary of `evaluateCFrag` is the sender, already checked.)
        if (
            beneficiary != msg.sender
                && (beneficiary == staker || beneficiary == worker || beneficiary == currentWorker)
        ) {
            revert Errors.Adjudicator_InvestigatorIsCulprit(beneficiary);
        }
        (uint256 penalty, uint256 reward) = _penalty(staker);
        violations[staker] += 1;
        emit CFragEvaluated(
            evidenceHash, staker, beneficiary, evidence.policyId, worker, verdict, penalty, reward
        );
        if (penalty != 0) escrow.slash(staker, penalty, beneficiary, reward);
    }

    /// @dev The evidence's shapes, then its hash, `keccak256(capsule || cfrag)`.
    function _evidenceHash(Evidence calldata evidence) internal pure returns (bytes32) {
        bytes calldata capsule = evidence.capsule;
        bytes calldata cfrag = evidence.cfrag;
        if (capsule.length != CAPSULE_LENGTH) revert Errors.Adjudicator_MalformedEvidence("capsule length");
        if (cfrag.length != CFRAG_LENGTH) revert Errors.Adjudicator_MalformedEvidence("cfrag length");
        if (evidence.delegatingKey.length != KEY_LENGTH || evidence.receivingKey.length != KEY_LENGTH) {
            revert Errors.Adjudicator_MalformedEvidence("key length");
        }
        return keccak256(abi.encodePacked(capsule, cfrag));
    }

    /// @dev umbral-pre's kfrag signature: ECDSA over sha256(kfrag_id || U1 || precursor || 0x01 ||
    /// delegating key || 0x01 || receiving key), by the key whose address the policy recorded.
    function _checkKfragSignature(Evidence calldata evidence) internal view {
        address expected = policyManager.kfragSignerOf(evidence.policyId);
        if (expected == address(0)) revert Errors.Adjudicator_PolicyNotFound(evidence.policyId);
        bytes calldata cfrag = evidence.cfrag;
        bytes32 digest = sha256(
            abi.encodePacked(
                cfrag[CF_KFRAG_ID:CF_PRECURSOR],
                cfrag[CF_U1:CF_U2],
                cfrag[CF_PRECURSOR:CF_E2],
                hex"01",
                evidence.delegatingKey,
                hex"01",
                evidence.receivingKey
            )
        );
        uint8 v = evidence.kfragSignatureV ? 28 : 27;
        address recovered = ecrecover(
            digest, v, bytes32(cfrag[CF_KFRAG_R:CF_KFRAG_S]), bytes32(cfrag[CF_KFRAG_S:CFRAG_LENGTH])
        );
        if (recovered != expected) revert Errors.Adjudicator_KfragSignatureMismatch(recovered, expected);
    }

    /// @dev Only the sender that committed to this evidence (for this beneficiary, when it names
    /// one) in an earlier block may reveal it.
    function _consumeCommitment(bytes32 commitment) internal {
        uint256 committedBlock = commitments[commitment];
        if (committedBlock == 0) revert Errors.Adjudicator_NotCommitted(commitment);
        if (committedBlock >= block.number) revert Errors.Adjudicator_RevealTooEarly(committedBlock);
        delete commitments[commitment];
    }

    /// @dev The answer's period has started and is within the evidence window.
    function _checkPeriod(uint256 period) internal view {
        uint256 current = block.timestamp / secondsPerPeriod;
        if (period > current) revert Errors.Adjudicator_PeriodInFuture(period, current);
        if (current - period > evidenceWindow) {
            revert Errors.Adjudicator_EvidenceExpired(period, current, evidenceWindow);
        }
    }

    /// @dev The worker that signed the answer, bonded to the staker the answer names in the period
    /// the answer names (not merely now: a rebond cannot move or dodge the blame).
    function _answeringWorker(Evidence calldata evidence) internal view returns (address worker) {
        bytes32 digest = MessageHashUtils.toEthSignedMessageHash(
            answerDigest(
                evidence.staker, evidence.period, evidence.policyId, evidence.capsule, evidence.cfrag
            )
        );
        (address recovered, ECDSA.RecoverError failure,) = ECDSA.tryRecover(digest, evidence.workerSignature);
        if (failure != ECDSA.RecoverError.NoError) revert Errors.Adjudicator_InvalidWorkerSignature();
        worker = recovered;
        (address staker, uint256 firstPeriod, uint256 lastPeriod) = escrow.workerBond(worker);
        uint256 period = evidence.period;
        if (staker != evidence.staker || period < firstPeriod || period > lastPeriod) {
            revert Errors.Adjudicator_WorkerNotBondedInPeriod(worker, evidence.staker, period);
        }
    }

    /// @dev The eight points carried compressed are on the curve and match their y coordinates.
    function _checkPoints(Evidence calldata evidence) internal pure {
        bytes calldata capsule = evidence.capsule;
        bytes calldata cfrag = evidence.cfrag;
        _checkCompressed(capsule, 0, evidence.ys[0]); // E
        _checkCompressed(capsule, 33, evidence.ys[1]); // V
        _checkCompressed(cfrag, CF_E1, evidence.ys[2]);
        _checkCompressed(cfrag, CF_V1, evidence.ys[3]);
        _checkCompressed(cfrag, CF_E2, evidence.ys[4]);
        _checkCompressed(cfrag, CF_V2, evidence.ys[5]);
        _checkCompressed(cfrag, CF_U1, evidence.ys[6]);
        _checkCompressed(cfrag, CF_U2, evidence.ys[7]);
    }

    /// @dev The products are checked first (a wrong one is the investigator's error, not the
    /// node's), then the three equations of the proof.
    function _verify(Evidence calldata evidence) internal pure returns (Verdict) {
        uint256 z = uint256(bytes32(evidence.cfrag[CF_Z:CF_KFRAG_R]));
        if (z == 0 || z >= Secp256k1.N) return Verdict.InvalidZ;
        if (_x(evidence.cfrag, CF_E1) >= Secp256k1.N || _x(evidence.cfrag, CF_V1) >= Secp256k1.N) {
            return Verdict.UncheckablePoint;
        }
        uint256 h = _challenge(evidence.capsule, evidence.cfrag);
        _checkProducts(evidence, z, h);
        if (!_isSum(evidence.e1h, evidence.cfrag, CF_E2, evidence.ys[4], evidence.ez)) return Verdict.WrongE;
        if (!_isSum(evidence.v1h, evidence.cfrag, CF_V2, evidence.ys[5], evidence.vz)) return Verdict.WrongV;
        if (!_isSum(evidence.u1h, evidence.cfrag, CF_U2, evidence.ys[7], evidence.uz)) return Verdict.WrongU;
        return Verdict.Correct;
    }

    /// @dev `ez = z*E`, `e1h = h*E1`, `vz = z*V`, `v1h = h*V1`, `uz = z*U`, `u1h = h*U1`.
    function _checkProducts(Evidence calldata evidence, uint256 z, uint256 h) internal pure {
        uint256[8] calldata ys = evidence.ys;
        if (
            !_isProduct(evidence.capsule, 0, ys[0], z, evidence.ez)
                || !_isProduct(evidence.cfrag, CF_E1, ys[2], h, evidence.e1h)
                || !_isProduct(evidence.capsule, 33, ys[1], z, evidence.vz)
                || !_isProduct(evidence.cfrag, CF_V1, ys[3], h, evidence.v1h)
                || !Secp256k1.isProduct(U_X, U_Y, z, evidence.uz.x, evidence.uz.y)
                || !_isProduct(evidence.cfrag, CF_U1, ys[6], h, evidence.u1h)
        ) revert Errors.Adjudicator_MalformedEvidence("product");
    }

    function _isProduct(bytes calldata data, uint256 offset, uint256 y, uint256 k, Point calldata product)
        internal
        pure
        returns (bool)
    {
        return Secp256k1.isProduct(_x(data, offset), y, k, product.x, product.y);
    }

    /// @dev Whether `sum == a + (the point at `offset` of `data`, with y coordinate `y`)`.
    function _isSum(Point calldata a, bytes calldata data, uint256 offset, uint256 y, Point calldata sum)
        internal
        pure
        returns (bool)
    {
        return Secp256k1.isSum(a.x, a.y, _x(data, offset), y, sum.x, sum.y);
    }

    /// @dev umbral-pre's `hash_to_cfrag_verification`: sha256 of the length-prefixed domain tag and
    /// the compressed points E, E1, E2, V, V1, V2, U, U1, U2, reduced to a non-zero scalar.
    function _challenge(bytes calldata capsule, bytes calldata cfrag) internal pure returns (uint256) {
        // Two steps: one encodePacked of every slice would not fit the stack.
        bytes memory ePoints = abi.encodePacked(
            uint32(18), "CFRAG_VERIFICATION", capsule[0:33], cfrag[CF_E1:CF_E1 + 33], cfrag[CF_E2:CF_E2 + 33]
        );
        bytes32 digest = sha256(
            abi.encodePacked(
                ePoints,
                capsule[33:66],
                cfrag[CF_V1:CF_V1 + 33],
                cfrag[CF_V2:CF_V2 + 33],
                U_COMPRESSED,
                cfrag[CF_U1:CF_Z] // U1 and U2, adjacent
            )
        );
        return uint256(digest) % (Secp256k1.N - 1) + 1;
    }

    function _penalty(address staker) internal view returns (uint256 penalty, uint256 reward) {
        penalty = basePenalty + penaltyHistoryCoefficient * violations[staker];
        // Held tokens only: what the staker could withdraw first must not lower the cap.
        uint256 cap = escrow.heldStakeOf(staker) / percentagePenaltyCoefficient;
        if (penalty > cap) penalty = cap;
        reward = penalty / rewardCoefficient;
    }

    function _checkCompressed(bytes calldata data, uint256 offset, uint256 y) internal pure {
        uint8 prefix = uint8(data[offset]);
        uint256 x = _x(data, offset);
        if (prefix != (y & 1 == 0 ? 2 : 3) || !Secp256k1.isOnCurve(x, y)) {
            revert Errors.Adjudicator_MalformedEvidence("point");
        }
    }

    function _x(bytes calldata data, uint256 offset) internal pure returns (uint256) {
        return uint256(bytes32(data[offset + 1:offset + 33]));
    }
}
