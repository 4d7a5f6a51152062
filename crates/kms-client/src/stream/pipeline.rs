//! The parallel pipeline every stream operation runs on: the input read in units (a chunk, or a
//! signed segment of chunks), each unit processed on whichever thread is free, and the units
//! handed to the writer in order, in bounded memory.

use std::{
    io::{self, Read, Write},
    sync::Mutex,
};

use super::StreamError;

/// Chunks per thread in a batch (unsigned files; signed segments take about twice as many, see
/// [`Layout::contiguous`]): large enough that a helper thread's start-up (tens of microseconds,
/// once per batch) is small against processing 1 MiB, small enough to keep memory bounded (two
/// batches: 2 x 8 threads x 16 x 64 KiB = 16 MiB at most, 32 MiB with segments).
pub(super) const CHUNKS_PER_WORKER: usize = 16;

/// How the input is cut into units: `pieces` pieces of `piece` bytes, stored `stride` bytes
/// apart in a buffer of `capacity` bytes (so that the sealed chunks can be made in place, with
/// their tags between them).
#[derive(Debug, Clone, Copy)]
pub(super) struct Layout {
    /// Pieces per unit.
    pub(super) pieces: usize,
    /// Bytes of input per piece.
    pub(super) piece: usize,
    /// Where piece `i` starts: `i * stride`.
    pub(super) stride: usize,
    /// The buffer's size (at least `(pieces - 1) * stride + piece`).
    pub(super) capacity: usize,
    /// Units per thread in a batch.
    pub(super) per_worker: usize,
}

impl Layout {
    /// Contiguous units of `size` bytes, `chunks` chunks' worth each.
    pub(super) fn contiguous(size: usize, chunks: usize) -> Self {
        Self {
            pieces: 1,
            piece: size,
            stride: size,
            capacity: size,
            // About 32 chunks of work per thread, whole units, at most 16 of them: a segment of
            // 16 chunks makes 2 per thread, so that a thread finishing early finds work.
            per_worker: (2 * CHUNKS_PER_WORKER / chunks.max(1)).clamp(1, CHUNKS_PER_WORKER),
        }
    }
}

/// One unit in flight.
pub(super) struct Slot {
    /// The unit as read (plaintext when sealing, sealed chunks when opening), then transformed
    /// in place.
    pub(super) buf: Vec<u8>,
    /// Bytes of input the unit holds (all of its pieces together).
    pub(super) len: usize,
    /// Whether the input ends with this unit.
    pub(super) last: bool,
    /// The unit's index in the payload.
    pub(super) index: u64,
    /// What processing gave: bytes of `buf` to write, or why the unit failed.
    pub(super) outcome: Result<usize, StreamError>,
}

/// Reads until `buf` is full or the input ends; returns how much was read.
pub(super) fn read_full<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads one byte to learn whether the input has more; `None` at its end.
fn peek_byte<R: Read + ?Sized>(reader: &mut R) -> io::Result<Option<u8>> {
    let mut one = [0u8; 1];
    Ok((read_full(reader, &mut one)? == 1).then_some(one[0]))
}

/// The reading side of the pipeline: units as `layout` cuts them, the last one shorter (or full
/// and followed by the end), with one byte of look-ahead to tell.
struct UnitReader<'a, R: ?Sized> {
    reader: &'a mut R,
    layout: Layout,
    carry: Option<u8>,
    next_index: u64,
    done: bool,
}

impl<R: Read + ?Sized> UnitReader<'_, R> {
    /// Fills the slots in order until they are all used or the input ends; returns how many
    /// hold a unit.
    fn fill(&mut self, slots: &mut [Slot]) -> io::Result<usize> {
        let mut count = 0;
        for slot in slots.iter_mut() {
            if self.done {
                break;
            }
            let Layout {
                pieces,
                piece,
                stride,
                ..
            } = self.layout;
            let mut len = 0;
            let mut short = false;
            for i in 0..pieces {
                let start = i * stride;
                let mut filled = 0;
                if let Some(byte) = self.carry.take() {
                    slot.buf[start] = byte;
                    filled = 1;
                }
                filled += read_full(self.reader, &mut slot.buf[start + filled..start + piece])?;
                len += filled;
                if filled < piece {
                    short = true;
                    break;
                }
            }
            let last = short || {
                self.carry = peek_byte(self.reader)?;
                self.carry.is_none()
            };
            slot.len = len;
            slot.last = last;
            slot.index = self.next_index;
            // Until `process` says otherwise: a slot that was somehow skipped is never emitted.
            slot.outcome = Err(StreamError::Io(io::Error::other("unit not processed")));
            self.next_index += 1;
            self.done = last;
            count += 1;
        }
        Ok(count)
    }
}

/// Reads `reader` in units as `layout` cuts them, runs `process` on each (on `threads` threads,
/// the calling one included) and hands them to `emit` in order, up to the first whose outcome
/// is an error, which is returned.
///
/// With threads, two batches of slots alternate: while helper threads process one, the calling
/// thread emits the previous one and reads the next into the same buffers, then helps with the
/// processing; so reading, writing and the cryptography overlap.
pub(super) fn pipeline<R, W, P, E>(
    reader: &mut R,
    writer: &mut W,
    layout: Layout,
    threads: usize,
    process: P,
    mut emit: E,
) -> Result<(), StreamError>
where
    R: Read + ?Sized,
    W: Write + ?Sized,
    P: Fn(&mut Slot) + Sync,
    E: FnMut(&mut W, &mut Slot, usize) -> Result<(), StreamError>,
{
    let mut emit = |writer: &mut W, slot: &mut Slot| -> Result<(), StreamError> {
        let out = std::mem::replace(&mut slot.outcome, Ok(0))?;
        emit(writer, slot, out)
    };
    let batch = threads.max(1) * layout.per_worker;
    let new_batch = || -> Vec<Slot> {
        (0..batch)
            .map(|_| Slot {
                buf: vec![0u8; layout.capacity],
                len: 0,
                last: false,
                index: 0,
                outcome: Ok(0),
            })
            .collect()
    };
    let mut units = UnitReader {
        reader,
        layout,
        carry: None,
        next_index: 0,
        done: false,
    };
    let mut current = new_batch();
    if threads <= 1 {
        loop {
            let count = units.fill(&mut current)?;
            for slot in &mut current[..count] {
                process(slot);
                emit(writer, slot)?;
            }
            if units.done {
                return Ok(());
            }
        }
    }

    let mut other = new_batch();
    let mut current_count = units.fill(&mut current)?;
    let mut pending = 0; // processed slots of `other` not emitted yet
    loop {
        let current_done = units.done;
        // The slots of the batch, handed out one at a time to whichever thread is free: the
        // calling thread joins in once its reading and writing is done.
        let queue = Mutex::new(current[..current_count].iter_mut());
        let work = || loop {
            let next = match queue.lock() {
                Ok(mut slots) => slots.next(),
                // Only a panicking worker poisons it, and the scope re-raises that panic.
                Err(_) => None,
            };
            match next {
                Some(slot) => process(slot),
                None => break,
            }
        };
        let next_count = std::thread::scope(|scope| {
            for _ in 1..threads {
                scope.spawn(work);
            }
            let io = (|| {
                for slot in &mut other[..pending] {
                    emit(writer, slot)?;
                }
                if current_done {
                    Ok(0)
                } else {
                    units.fill(&mut other).map_err(StreamError::from)
                }
            })();
            work();
            io
        })?;
        if current_done {
            for slot in &mut current[..current_count] {
                emit(writer, slot)?;
            }
            return Ok(());
        }
        std::mem::swap(&mut current, &mut other);
        pending = current_count;
        current_count = next_count;
    }
}
