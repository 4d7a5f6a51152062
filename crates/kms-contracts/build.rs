//! `sol!` reads the Foundry artifacts at compile time, but cargo does not know it: without these
//! lines a contract rebuilt by `forge build` leaves stale bindings behind.

fn main() {
    for contract in ["KMSToken", "StakingEscrow", "PolicyManager", "Adjudicator"] {
        println!("cargo:rerun-if-changed=../../out/{contract}.sol/{contract}.json");
    }
}
