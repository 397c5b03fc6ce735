//! MySQL/MariaDB-only behaviour: TLS through mysql_async's URL parameters.

mod common;

use common::{Db, Engine, Project, Run, create_table};

fn migrate_with(project: &Project, url: &str) -> Run {
    Run::of(project.bare().args(["--database-url", url, "--dir"]).arg(project.dir()).arg("migrate").output().unwrap())
}

/// The test server's user `airlock_tls` is created `REQUIRE SSL`, so getting in
/// as it proves the connection was encrypted.
#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn tls_is_used_when_required_and_verified_by_default() {
    let db = Db::new(Engine::MySql);
    let project = Project::new();
    project.write("1_t.up.sql", &create_table(1));
    let tls_user = db.url.replacen("root@", "airlock_tls@", 1);

    let plain = migrate_with(&project, &tls_user);
    plain.expect(1);
    assert!(plain.stderr.contains("Access denied"), "{}", plain.stderr);
    assert!(!plain.all().contains("airlock_tls:"), "no password shown");

    // Encrypted; the test CA is not a public one, so verification is turned off here.
    let encrypted =
        migrate_with(&project, &format!("{tls_user}?require_ssl=true&verify_ca=false&verify_identity=false"));
    encrypted.expect(0);
    assert!(db.table_exists("t_1"));

    // With verification on (the default with require_ssl), an unknown CA is refused.
    project.write("2_t.up.sql", &create_table(2));
    let unverified = migrate_with(&project, &format!("{tls_user}?require_ssl=true"));
    unverified.expect(1);
    assert!(!db.table_exists("t_2"));
}
