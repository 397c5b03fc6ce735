//! Tells the tests whether the throwaway servers are there. `scripts/test`
//! starts PostgreSQL, MariaDB and ChromeDriver, installs dbmate and migra, and says where
//! (AIRLOCK_TEST_POSTGRES_URL, AIRLOCK_TEST_MYSQL_URL, AIRLOCK_TEST_DBMATE,
//! AIRLOCK_TEST_MIGRA, AIRLOCK_TEST_WEBDRIVER_URL);
//! a plain `cargo test` without them runs what needs none and marks the rest
//! ignored with how to run them (the `cfg_attr(not(airlock_test_servers),
//! ignore = ...)` of tests/common's macros and of each such test), instead
//! of failing each one.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(airlock_test_servers)");
    let vars = [
        "AIRLOCK_TEST_POSTGRES_URL",
        "AIRLOCK_TEST_MYSQL_URL",
        "AIRLOCK_TEST_DBMATE",
        "AIRLOCK_TEST_MIGRA",
        "AIRLOCK_TEST_WEBDRIVER_URL",
    ];
    for var in vars {
        println!("cargo::rerun-if-env-changed={var}");
    }
    if vars.iter().all(|v| std::env::var_os(v).is_some()) {
        println!("cargo::rustc-cfg=airlock_test_servers");
    }
}
