//! Reading a `pg_dump` custom-format archive as it streams past, for each
//! table's rows and [`RowsDigest`]: the digests then describe exactly what
//! was dumped, and the server reads each table once, not twice.
//!
//! The archive, as `pg_dump -Fc -Z0` writes it to a pipe: a header (magic
//! `PGDMP`, format version, integer and offset sizes, compression, date,
//! names), the table of contents (one entry per object: dump id, tag, kind,
//! schema, the `COPY` statement of table data...), then a data block per
//! entry with data: a block type, the dump id, and length-prefixed chunks
//! up to a zero length. Uncompressed, a table's chunks are its rows as
//! `COPY ... TO STDOUT` writes them in text, ended by `\.`. An integer is
//! a sign byte then `int_size` bytes, least significant first; a string an
//! integer length (negative: none) then its bytes.
//!
//! Only the format versions read here are trusted (1.14, PostgreSQL 15;
//! 1.15, 16; 1.16, 17 and 18): anything else, or compressed data, makes
//! [`ArchiveDigests::finish`] say why, and the caller reads the digests
//! from the server instead.

use std::collections::HashMap;

use airlock_driver::backup::RowsDigest;

/// `pg_dump`'s block types.
const BLOCK_DATA: u8 = 1;
const BLOCK_BLOBS: u8 = 3;

/// Past this many bytes waiting to be read (a string of the table of
/// contents, say), the reader is out of step with the archive: it gives up
/// rather than hold the dump in memory.
const MOST_PENDING: usize = 64 << 20;

/// The format versions whose layout this reader knows.
const KNOWN: std::ops::RangeInclusive<(u8, u8)> = (1, 14)..=(1, 16);

/// A table's data in the archive: its schema, its name, and what its rows came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TableData {
    pub schema: String,
    pub table: String,
    pub rows: u64,
    pub digest: String,
}

/// Where the reader is in the archive.
enum Part {
    /// The header and the table of contents, read whole entry by entry.
    Head,
    /// Between blocks: a block's type and dump id next.
    Block,
    /// A data block's next chunk length.
    ChunkLength,
    /// Inside a chunk: this many bytes of it left.
    Chunk(usize),
    /// A blobs block: the next blob's oid (0 ends the block).
    BlobOid,
    /// A blob's next chunk length.
    BlobChunkLength,
    /// Inside a blob's chunk.
    BlobChunk(usize),
    /// Gave up, saying why.
    Failed(String),
}

/// The digests of the tables in a custom-format archive, read as it streams.
pub(crate) struct ArchiveDigests {
    part: Part,
    /// Bytes received and not yet read.
    pending: Vec<u8>,
    int_size: usize,
    off_size: usize,
    version: (u8, u8, u8),
    /// Table of contents entries left to read (once the header is read).
    toc_left: Option<i64>,
    /// Table data entries: dump id → (schema, table).
    tables: HashMap<i64, (String, String)>,
    /// The table data block being read, if the block is one.
    current: Option<(i64, RowsDigest)>,
    done: Vec<TableData>,
}

/// Not enough bytes yet.
struct Short;

/// A cursor over the pending bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
    int_size: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Short> {
        let slice = self.bytes.get(self.at..self.at.saturating_add(n)).ok_or(Short)?;
        self.at += n;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, Short> {
        Ok(self.take(1)?[0])
    }

    fn int(&mut self) -> Result<i64, Short> {
        let size = self.int_size;
        let sign = self.byte()?;
        let digits = self.take(size)?;
        let value = digits.iter().rev().fold(0i64, |v, b| (v << 8) | i64::from(*b));
        Ok(if sign == 0 { value } else { -value })
    }

    /// A string, or None for a null one.
    fn string(&mut self) -> Result<Option<String>, Short> {
        let n = self.int()?;
        if n < 0 {
            return Ok(None);
        }
        Ok(Some(String::from_utf8_lossy(self.take(n as usize)?).into_owned()))
    }
}

impl ArchiveDigests {
    pub(crate) fn new() -> ArchiveDigests {
        ArchiveDigests {
            part: Part::Head,
            pending: Vec::new(),
            int_size: 4,
            off_size: 8,
            version: (0, 0, 0),
            toc_left: None,
            tables: HashMap::new(),
            current: None,
            done: Vec::new(),
        }
    }

    /// Takes the next bytes of the archive, cut anywhere.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        if matches!(self.part, Part::Failed(_)) {
            return;
        }
        let mut pending = std::mem::take(&mut self.pending);
        pending.extend_from_slice(bytes);
        let mut at = 0;
        while let Ok(Some(next)) = self.step(&pending, at) {
            at = next;
        }
        if !matches!(self.part, Part::Failed(_)) {
            pending.drain(..at);
            self.pending = pending;
            if self.pending.len() > MOST_PENDING {
                self.fail(format!("more than {MOST_PENDING} bytes of one item: the archive is not as expected"));
                self.pending = Vec::new();
            }
        }
    }

    /// Reads what it can from `bytes[at..]`: where the next step starts,
    /// None when it needs more bytes (or failed).
    fn step(&mut self, bytes: &[u8], at: usize) -> Result<Option<usize>, Short> {
        let mut cursor = Cursor { bytes, at, int_size: self.int_size };
        match self.part {
            Part::Head => {
                if self.toc_left.is_none() {
                    match read_header(&mut cursor)? {
                        Ok((version, int_size, off_size, toc)) => {
                            self.version = version;
                            self.int_size = int_size;
                            self.off_size = off_size;
                            self.toc_left = Some(toc);
                        }
                        Err(why) => return Ok(self.fail(why)),
                    }
                } else if self.toc_left == Some(0) {
                    self.part = Part::Block;
                } else {
                    let entry = read_entry(&mut cursor, self.version, self.off_size)?;
                    if let Some((id, schema, table)) = entry {
                        self.tables.insert(id, (schema, table));
                    }
                    self.toc_left = self.toc_left.map(|n| n - 1);
                }
            }
            Part::Block => {
                let kind = cursor.byte()?;
                let id = cursor.int()?;
                self.part = match kind {
                    BLOCK_DATA => {
                        self.current = self.tables.contains_key(&id).then(|| (id, RowsDigest::default()));
                        Part::ChunkLength
                    }
                    BLOCK_BLOBS => Part::BlobOid,
                    other => return Ok(self.fail(format!("a block of unknown type {other}"))),
                };
            }
            Part::ChunkLength => {
                let n = cursor.int()?;
                self.part = match n {
                    0 => {
                        self.finish_block();
                        Part::Block
                    }
                    n if n > 0 => Part::Chunk(n as usize),
                    n => return Ok(self.fail(format!("a chunk of length {n}"))),
                };
            }
            Part::Chunk(left) => {
                let here = (cursor.bytes.len() - cursor.at).min(left);
                if here == 0 {
                    return Err(Short);
                }
                let bytes = cursor.take(here)?;
                if let Some((_, digest)) = &mut self.current {
                    digest.update(bytes);
                }
                self.part = if here == left { Part::ChunkLength } else { Part::Chunk(left - here) };
            }
            Part::BlobOid => {
                let oid = cursor.int()?;
                self.part = if oid == 0 { Part::Block } else { Part::BlobChunkLength };
            }
            Part::BlobChunkLength => {
                let n = cursor.int()?;
                self.part = if n > 0 { Part::BlobChunk(n as usize) } else { Part::BlobOid };
            }
            Part::BlobChunk(left) => {
                let here = (cursor.bytes.len() - cursor.at).min(left);
                if here == 0 {
                    return Err(Short);
                }
                cursor.take(here)?;
                self.part = if here == left { Part::BlobChunkLength } else { Part::BlobChunk(left - here) };
            }
            Part::Failed(_) => return Ok(None),
        }
        Ok(Some(cursor.at))
    }

    fn finish_block(&mut self) {
        if let Some((id, digest)) = self.current.take()
            && let Some((schema, table)) = self.tables.get(&id)
        {
            let (rows, digest) = digest.finish();
            self.done.push(TableData { schema: schema.clone(), table: table.clone(), rows, digest });
        }
    }

    fn fail(&mut self, why: String) -> Option<usize> {
        self.part = Part::Failed(why);
        None
    }

    /// Each table's data read, or why the archive could not be read whole.
    pub(crate) fn finish(self) -> Result<Vec<TableData>, String> {
        match self.part {
            Part::Failed(why) => Err(why),
            Part::Block if self.pending.is_empty() => Ok(self.done),
            _ => Err("the archive ended in the middle".to_owned()),
        }
    }
}

/// The header: format version, integer and offset sizes, and how many
/// table of contents entries follow; or why it cannot be read here.
#[allow(clippy::type_complexity)]
fn read_header(c: &mut Cursor<'_>) -> Result<Result<((u8, u8, u8), usize, usize, i64), String>, Short> {
    if c.take(5)? != b"PGDMP" {
        return Ok(Err("not a pg_dump archive".to_owned()));
    }
    let version = (c.byte()?, c.byte()?, c.byte()?);
    if !KNOWN.contains(&(version.0, version.1)) {
        return Ok(Err(format!(
            "archive format {}.{}.{} is not one this airlock reads",
            version.0, version.1, version.2
        )));
    }
    let (int_size, off_size) = (c.byte()? as usize, c.byte()? as usize);
    if !(1..=8).contains(&int_size) || !(1..=8).contains(&off_size) {
        return Ok(Err(format!("integers of {int_size} bytes, offsets of {off_size}")));
    }
    c.int_size = int_size;
    let format = c.byte()?;
    if format != 1 {
        return Ok(Err(format!("archive format {format}, not custom")));
    }
    let compression = if (version.0, version.1) >= (1, 15) { i64::from(c.byte()?) } else { c.int()? };
    if compression != 0 {
        return Ok(Err("the archive is compressed".to_owned()));
    }
    for _ in 0..7 {
        c.int()?; // the date and time it was made
    }
    c.string()?; // the database's name
    c.string()?; // the server's version
    c.string()?; // pg_dump's version
    let toc = c.int()?;
    if !(0..=100_000_000).contains(&toc) {
        return Ok(Err(format!("a table of contents of {toc} entries")));
    }
    Ok(Ok((version, int_size, off_size, toc)))
}

/// One table of contents entry: for table data, its dump id, schema and
/// table; None for any other.
fn read_entry(
    c: &mut Cursor<'_>,
    version: (u8, u8, u8),
    off_size: usize,
) -> Result<Option<(i64, String, String)>, Short> {
    let id = c.int()?;
    c.int()?; // has data
    c.string()?; // the catalog's table oid
    c.string()?; // the object's oid
    let tag = c.string()?.unwrap_or_default();
    let desc = c.string()?.unwrap_or_default();
    c.int()?; // section
    c.string()?; // definition
    c.string()?; // drop statement
    c.string()?; // copy statement
    let schema = c.string()?.unwrap_or_default();
    c.string()?; // tablespace
    c.string()?; // table access method
    if (version.0, version.1) >= (1, 16) {
        c.int()?; // relkind
    }
    c.string()?; // owner
    c.string()?; // "false": with OIDs, long gone
    while c.string()?.is_some() {} // dependencies, up to a null
    c.byte()?; // the data's offset: whether known
    c.take(off_size)?; // and where
    Ok((desc == "TABLE DATA").then_some((id, schema, tag)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pg_dump -Fc -Z0 | cat` of a database `shop`: `carts` (three rows, a
    /// generated column pg_dump leaves out, a value on two lines, a
    /// backslash), `empty` (no rows) and `nocols` (two rows, no columns),
    /// by pg_dump 15 (format 1.14) and 18 (1.16); and by 15 compressed.
    const PG15: &[u8] = include_bytes!("../tests/archives/shop-pg15.dump");
    const PG18: &[u8] = include_bytes!("../tests/archives/shop-pg18.dump");
    const COMPRESSED: &[u8] = include_bytes!("../tests/archives/shop-pg15-compressed.dump");

    fn rows(text: &[u8]) -> (u64, String) {
        let mut digest = RowsDigest::default();
        digest.update(text);
        digest.finish()
    }

    fn read(archive: &[u8], cut: usize) -> Result<Vec<TableData>, String> {
        let mut reader = ArchiveDigests::new();
        for chunk in archive.chunks(cut) {
            reader.update(chunk);
        }
        reader.finish()
    }

    fn expected() -> Vec<TableData> {
        let table = |name: &str, (rows, digest): (u64, String)| TableData {
            schema: "public".to_owned(),
            table: name.to_owned(),
            rows,
            digest,
        };
        let mut tables = vec![
            table("carts", rows(b"1\ttwo\\nlines\t9.50\n2\t\\N\t0.00\n3\tback\\\\slash\t1.00\n")),
            table("empty", rows(b"")),
            table("nocols", rows(b"\n\n")),
        ];
        tables.sort_by(|a, b| a.table.cmp(&b.table));
        tables
    }

    fn sorted(mut tables: Vec<TableData>) -> Vec<TableData> {
        tables.sort_by(|a, b| a.table.cmp(&b.table));
        tables
    }

    #[test]
    fn each_tables_rows_are_read_from_the_archive_of_either_format_however_it_is_cut() {
        for archive in [PG15, PG18] {
            for cut in [1, 2, 7, 64, 1000, archive.len()] {
                assert_eq!(read(archive, cut).map(sorted), Ok(expected()), "cut every {cut} bytes");
            }
        }
    }

    #[test]
    fn an_archive_it_cannot_read_says_why() {
        assert_eq!(read(COMPRESSED, 100).err().as_deref(), Some("the archive is compressed"));
        assert_eq!(read(&PG15[..PG15.len() - 3], 100).err().as_deref(), Some("the archive ended in the middle"));
        assert_eq!(read(b"SQLITE", 100).err().as_deref(), Some("not a pg_dump archive"));
        let mut newer = PG18.to_vec();
        newer[6] = 17;
        assert_eq!(read(&newer, 100).err().as_deref(), Some("archive format 1.17.0 is not one this airlock reads"));
    }
}
