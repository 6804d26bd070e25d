//! `auto` by measurement: the table `onecopy tune` writes, how a job follows it (every mechanism
//! it names, per message, in one job), and every way a cache file can be unusable.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_all_ok, pattern, run_job_config, watchdog};
use onecopy::config::{Config, TuneFile};
use onecopy::traits::*;
use onecopy::transport::Mechanism;
use onecopy::transport::auto::{
    self, AutoTable, Machine, Pattern, Row, Source as TableSource, Tuned,
};

fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("onecopy-tune-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join("tune.json")
}

/// A table that names all four mechanisms, so that one job moves messages by each of them.
fn mixed_table() -> AutoTable {
    use Mechanism::*;
    let row = |from_bytes, single, many| Row {
        from_bytes,
        single,
        many,
    };
    AutoTable::new(vec![
        row(0, CmaRead, ShmCopy),
        row(200_000, CmaWrite, CmaSplit),
        row(1 << 20, ShmCopy, CmaRead),
        row(4 << 20, CmaSplit, CmaWrite),
    ])
    .expect("valid table")
}

fn config_with(path: &Path) -> Config {
    Config {
        tune_file: TuneFile::At(path.to_path_buf()),
        ..Config::default()
    }
}

const SIZES: [usize; 6] = [70_000, 150_000, 300_001, 1_500_000, 3 << 20, 5_000_003];

fn filled(len: usize, salt: usize) -> Vec<u8> {
    (0..len).map(|i| pattern(i + salt)).collect()
}

/// Ping-pongs (one message at a time) and windows of sends (many at once) at every size of
/// [`SIZES`], checking every byte.
fn every_row_of_the_table(world: &onecopy::World) -> Result<(), String> {
    let (table, source) = world.auto_table();
    if world.mode() != Mechanism::ShmCopy {
        if table != mixed_table() {
            return Err(format!("the job follows\n{}", table.describe()));
        }
        if !matches!(source, TableSource::Tuned(_)) {
            return Err(format!("the table came from {source}"));
        }
    } else {
        eprintln!("SKIP (table check): no single copy on this machine, the job streams");
    }
    let peer = world.process_at_rank(1 - world.rank());
    let me = world.rank() as usize;
    for (k, &len) in SIZES.iter().enumerate() {
        let mine = filled(len, me * 7 + k);
        let theirs = filled(len, (1 - me) * 7 + k);
        let mut got = vec![0u8; len];
        if world.rank() == 0 {
            peer.send(&mine[..]).map_err(|e| e.to_string())?;
            peer.receive_into(&mut got[..]).map_err(|e| e.to_string())?;
        } else {
            peer.receive_into(&mut got[..]).map_err(|e| e.to_string())?;
            peer.send(&mine[..]).map_err(|e| e.to_string())?;
        }
        if got != theirs {
            return Err(format!("{len} bytes one at a time arrived changed"));
        }
        // A window each way at once: every send after the first one sees others in flight.
        const WINDOW: usize = 4;
        let outs: Vec<Vec<u8>> = (0..WINDOW).map(|w| filled(len, 100 * w + k)).collect();
        let mut ins: Vec<Vec<u8>> = (0..WINDOW).map(|_| vec![0u8; len]).collect();
        onecopy::request::scope(|scope| {
            let mut reqs = Vec::new();
            for buf in ins.iter_mut() {
                reqs.push(peer.immediate_receive_into(scope, &mut buf[..])?);
            }
            let mut sends = Vec::new();
            for buf in &outs {
                sends.push(peer.immediate_send(scope, &buf[..])?);
            }
            for r in reqs {
                r.wait()?;
            }
            for s in sends {
                s.wait()?;
            }
            Ok::<(), onecopy::CommError>(())
        })
        .map_err(|e| e.to_string())?;
        for (w, buf) in ins.iter().enumerate() {
            if *buf != outs[w] {
                return Err(format!(
                    "{len} bytes, message {w} of a window, arrived changed"
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn a_job_follows_a_measured_table_through_every_mechanism_it_names() {
    let _dog = watchdog(
        "a_job_follows_a_measured_table_through_every_mechanism_it_names",
        120,
    );
    let path = temp_file("mixed");
    Tuned::of(Machine::this(), &mixed_table(), vec![])
        .save(&path)
        .expect("save");
    let errors = run_job_config(2, "auto", config_with(&path), every_row_of_the_table);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
    assert_all_ok(&errors, "mixed table");
}

#[test]
fn a_file_that_cannot_be_used_leaves_the_builtin_table_and_says_why() {
    let path = temp_file("bad");
    // None at all: built in, with nothing to explain.
    let _ = std::fs::remove_file(&path);
    assert_eq!(
        auto::table_for(&config_with(&path)),
        (AutoTable::builtin(), TableSource::Builtin(None))
    );
    // Measured on another machine.
    let mut other = Machine::this();
    other.cpu.push_str(" (another)");
    Tuned::of(other, &mixed_table(), vec![])
        .save(&path)
        .unwrap();
    let (table, source) = auto::table_for(&config_with(&path));
    assert_eq!(table, AutoTable::builtin());
    assert!(source.to_string().contains("another machine"), "{source}");
    // Not JSON.
    std::fs::write(&path, "[1, 2").unwrap();
    let (table, source) = auto::table_for(&config_with(&path));
    assert_eq!(table, AutoTable::builtin());
    assert!(matches!(source, TableSource::Builtin(Some(_))), "{source}");
    // A mechanism that cannot be chosen per message.
    let mut tuned = Tuned::of(Machine::this(), &mixed_table(), vec![]);
    tuned.table[1].1 = "procmem".into();
    tuned.save(&path).unwrap();
    let (table, source) = auto::table_for(&config_with(&path));
    assert_eq!(table, AutoTable::builtin());
    assert!(source.to_string().contains("procmem"), "{source}");
    // ONECOPY_TUNE_FILE=none, and ONECOPY_CMA_THRESHOLD, which overrides any file.
    let off = Config {
        tune_file: TuneFile::Off,
        ..Config::default()
    };
    assert_eq!(
        auto::table_for(&off),
        (AutoTable::builtin(), TableSource::Off)
    );
    Tuned::of(Machine::this(), &mixed_table(), vec![])
        .save(&path)
        .unwrap();
    let threshold = Config {
        cma_threshold_bytes: Some(1 << 20),
        ..config_with(&path)
    };
    let (table, source) = auto::table_for(&threshold);
    assert_eq!(
        table.choose((1 << 20) - 1, Pattern::Single),
        Mechanism::ShmCopy
    );
    assert_eq!(table.choose(1 << 20, Pattern::Many), Mechanism::CmaSplit);
    assert_eq!(source, TableSource::Threshold(1 << 20));
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

fn onecopy(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_onecopy"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run onecopy")
}

#[test]
fn tune_measures_saves_shows_and_resets() {
    let _dog = watchdog("tune_measures_saves_shows_and_resets", 180);
    let path = temp_file("cli");
    let file = path.to_str().unwrap();
    let out = onecopy(
        &[
            "tune",
            "--sizes",
            "128K,1M",
            "--rounds",
            "1",
            "--budget-ms",
            "3",
            "--file",
            file,
        ],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("saved to"), "{stdout}");
    let tuned = Tuned::load(&path).expect("load").expect("written");
    assert_eq!(tuned.machine, Machine::this());
    let table = tuned.table().expect("a usable table");
    // Every mechanism this machine allows was measured at both sizes, in all three tests.
    let usable = 4 - stdout.matches("not usable").count();
    assert_eq!(tuned.cells.len(), usable * 2 * 3, "{stdout}");
    for c in &tuned.cells {
        assert!(c.value.is_finite() && c.value > 0.0, "{c:?}");
    }
    let show = onecopy(&["tune", "--show", "--file", file], &[]);
    let shown = String::from_utf8_lossy(&show.stdout);
    assert!(show.status.success(), "{shown}");
    assert!(
        shown.contains("measured") && shown.contains(&table.describe()),
        "{shown}"
    );
    // The file given by the environment is the one a job reads.
    let env_show = onecopy(&["tune", "--show"], &[("ONECOPY_TUNE_FILE", file)]);
    assert!(String::from_utf8_lossy(&env_show.stdout).contains(file));
    let reset = onecopy(&["tune", "--reset", "--file", file], &[]);
    assert!(reset.status.success());
    assert!(!path.exists());
    let again = onecopy(&["tune", "--reset", "--file", file], &[]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to remove"));
    let none = onecopy(&["tune", "--show", "--file", file], &[]);
    assert!(String::from_utf8_lossy(&none.stdout).contains("built-in table"));
    // No file to write to is a usage error.
    let off = onecopy(&["tune", "--show"], &[("ONECOPY_TUNE_FILE", "none")]);
    assert_eq!(off.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}
