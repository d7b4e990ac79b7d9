//! The wire of the JavaScript call queue (`index.js`): `reserve`, `commit` and `release`
//! calls of one JavaScript turn cross into Rust once, as one string and one `Float64Array`,
//! and their answers come back the same way. This spares one Promise, one napi scope and one
//! string read per argument for every call.
//!
//! In: `text` holds every string of the batch, back to back; `nums` holds, per call, its kind
//! (0 reserve, 1 commit, 2 release) and the UTF-16 length of its order id, then for a reserve
//! its ttl (-1: the default) and its line count, and per line the lengths of sku and
//! warehouse and the qty. JavaScript has checked the types already (a call whose arguments
//! it doubts goes through the single-call methods instead), so a malformed batch is a bug
//! and throws.
//!
//! Out: `[text, nums, errors]`. Per call `nums` holds 1 and the reservation (status index,
//! createdAt, expiresAt, finishedAt or -1, created as 1/0 or -1 for none, the line count and
//! per line the UTF-16 lengths of sku and warehouse and the qty; the strings are in `text`),
//! or 0, and then `errors[i]` is the error to reject with.
//!
//! The calls are decoded into one buffer of UTF-8 and ranges into it, run through core's
//! `execute_answered` borrowing that buffer, and answered from the reservation as each call
//! left it: no `String` per argument and no read-back of the reservation.

use std::ops::Range;

use napi::bindgen_prelude::Unknown;
use napi::{check_status, sys, Env, JsValue};
use stockledger::{limits, Answered, CallRef, Error, LineRef, OrderRef, Status};

use crate::errors;

type Res<T> = std::result::Result<T, Error>;

/// Most calls in one crossing; `index.js` crosses at this many at the latest.
pub const MAX_CALLS: usize = 4096;

/// Most calls in one core call (its limit is 10,000); a group of batches is split between
/// whole batches.
const MAX_EXECUTE: usize = 10_000;

pub fn malformed() -> napi::Error {
    napi::Error::from_reason("stockledger: malformed call batch (internal)")
}

const RESERVE: u8 = 0;
const COMMIT: u8 = 1;
const RELEASE: u8 = 2;

/// One call: its kind, order id, ttl and lines (ranges into `Calls::text`/`Calls::lines`).
struct Call {
    kind: u8,
    id: Range<u32>,
    ttl_seconds: u64,
    lines: Range<u32>,
}

/// The strings of a crossing, read once as UTF-16 and handed out as ranges of one UTF-8
/// buffer by the UTF-16 lengths JavaScript sent; reused between crossings.
#[derive(Default)]
pub struct Text {
    utf16: Vec<u16>,
    /// The UTF-8 of the strings handed out so far (all of them when ASCII).
    pub bytes: Vec<u8>,
    ascii: bool,
    /// UTF-16 units handed out.
    at: usize,
}

impl Text {
    /// Reads the JavaScript string `text` (emptying `self` first).
    pub fn read(&mut self, env: &Env, text: &Unknown) -> napi::Result<()> {
        let e = env.raw();
        let mut len = 0usize;
        check_status!(unsafe {
            sys::napi_get_value_string_utf16(e, text.raw(), std::ptr::null_mut(), 0, &mut len)
        })?;
        self.utf16.clear();
        self.utf16.resize(len + 1, 0);
        check_status!(unsafe {
            sys::napi_get_value_string_utf16(
                e,
                text.raw(),
                self.utf16.as_mut_ptr(),
                len + 1,
                &mut len,
            )
        })?;
        self.utf16.truncate(len);
        self.at = 0;
        self.bytes.clear();
        // ASCII (every key the core accepts): the UTF-8 is the UTF-16 narrowed, and
        // JavaScript's UTF-16 offsets are byte offsets.
        self.ascii = self.utf16.iter().all(|&u| u < 0x80);
        if self.ascii {
            self.bytes.extend(self.utf16.iter().map(|&u| u as u8));
        }
        Ok(())
    }

    /// The next string, of `len` UTF-16 units, as a range of `bytes`.
    pub fn next(&mut self, len: f64) -> napi::Result<Range<u32>> {
        let (start, end) = (self.at, self.at + len as usize);
        if end > self.utf16.len() {
            return Err(malformed());
        }
        self.at = end;
        if self.ascii {
            return Ok(start as u32..end as u32);
        }
        let from = self.bytes.len();
        // Lone surrogates become U+FFFD, as napi's UTF-8 read of the string does.
        for c in char::decode_utf16(self.utf16[start..end].iter().copied()) {
            let c = c.unwrap_or(char::REPLACEMENT_CHARACTER);
            let mut b = [0u8; 4];
            self.bytes
                .extend_from_slice(c.encode_utf8(&mut b).as_bytes());
        }
        Ok(from as u32..self.bytes.len() as u32)
    }

    /// Every string was handed out.
    pub fn check_end(&self) -> napi::Result<()> {
        if self.at == self.utf16.len() {
            Ok(())
        } else {
            Err(malformed())
        }
    }

    /// Every string handed out, as one `str` (checked once, not per string).
    pub fn all(&self) -> &str {
        // Built from whole `str`s (see `next`), so never the fallback.
        std::str::from_utf8(&self.bytes).unwrap_or("")
    }
}

/// A range handed out by [`Text::next`], of [`Text::all`].
pub fn slice<'a>(all: &'a str, r: &Range<u32>) -> &'a str {
    // Ranges fall between whole characters, so never the fallback.
    all.get(r.start as usize..r.end as usize).unwrap_or("")
}

/// The decoded calls of one crossing, owning their text; reused between crossings.
#[derive(Default)]
pub struct Calls {
    text: Text,
    calls: Vec<Call>,
    /// sku, warehouse, qty.
    lines: Vec<(Range<u32>, Range<u32>, u64)>,
}

impl Calls {
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Decodes a crossing's `text` and `nums` into `self` (emptied first).
    pub fn decode(&mut self, env: &Env, text: &Unknown, nums: &Unknown) -> napi::Result<()> {
        self.calls.clear();
        self.lines.clear();
        self.text.read(env, text)?;
        let nums = float64s(env, nums)?;
        let mut it = nums.iter().copied();
        let mut num = || it.next().ok_or_else(malformed);
        while let Some(kind) = it_next_kind(&mut num)? {
            let id = self.text.next(num()?)?;
            let (ttl_seconds, lines) = match kind {
                RESERVE => {
                    let ttl = num()?;
                    let count = num()? as usize;
                    let start = self.lines.len() as u32;
                    for _ in 0..count {
                        let sku = self.text.next(num()?)?;
                        let warehouse = self.text.next(num()?)?;
                        self.lines.push((sku, warehouse, num()? as u64));
                    }
                    let ttl = if ttl < 0.0 {
                        limits::DEFAULT_TTL_SECONDS
                    } else {
                        ttl as u64
                    };
                    (ttl, start..self.lines.len() as u32)
                }
                COMMIT | RELEASE => (0, 0..0),
                _ => return Err(malformed()),
            };
            self.calls.push(Call {
                kind,
                id,
                ttl_seconds,
                lines,
            });
            if self.calls.len() > MAX_CALLS {
                return Err(malformed());
            }
        }
        self.text.check_end()
    }

    /// The lines of every call, borrowing the text, in call order.
    fn line_refs(&self) -> Vec<LineRef<'_>> {
        let all = self.text.all();
        self.lines
            .iter()
            .map(|(sku, warehouse, qty)| LineRef {
                sku: slice(all, sku),
                warehouse: slice(all, warehouse),
                qty: *qty,
            })
            .collect()
    }

    /// Appends the calls as core's `CallRef`s, their lines taken from `lines` (this batch's
    /// `line_refs`).
    fn push_refs<'a>(&'a self, lines: &'a [LineRef<'a>], out: &mut Vec<CallRef<'a>>) {
        let all = self.text.all();
        for c in &self.calls {
            let order_id = slice(all, &c.id);
            out.push(match c.kind {
                RESERVE => CallRef::Reserve(OrderRef {
                    order_id,
                    lines: &lines[c.lines.start as usize..c.lines.end as usize],
                    ttl_seconds: c.ttl_seconds,
                }),
                COMMIT => CallRef::Commit(order_id),
                _ => CallRef::Release(order_id),
            });
        }
    }
}

/// `Some(kind)` of the next call, `None` at the end of `nums`.
fn it_next_kind(num: &mut impl FnMut() -> napi::Result<f64>) -> napi::Result<Option<u8>> {
    match num() {
        Ok(k) if (0.0..=2.0).contains(&k) => Ok(Some(k as u8)),
        Ok(_) => Err(malformed()),
        Err(_) => Ok(None),
    }
}

/// The elements of a `Float64Array`, read in place.
pub fn float64s<'a>(env: &Env, nums: &'a Unknown) -> napi::Result<&'a [f64]> {
    let mut kind = 0;
    let mut n = 0usize;
    let mut data = std::ptr::null_mut();
    let mut ab = std::ptr::null_mut();
    let mut offset = 0usize;
    check_status!(unsafe {
        sys::napi_get_typedarray_info(
            env.raw(),
            nums.raw(),
            &mut kind,
            &mut n,
            &mut data,
            &mut ab,
            &mut offset,
        )
    })?;
    if kind != sys::TypedarrayType::float64_array {
        return Err(malformed());
    }
    if n == 0 {
        return Ok(&[]);
    }
    // SAFETY: a live Float64Array of `n` elements, referenced by `nums` for 'a; read before
    // anything can run JavaScript.
    Ok(unsafe { std::slice::from_raw_parts(data as *const f64, n) })
}

/// The answers of one crossing: per call the ranges of its answer in `nums` and `text`, or
/// its error. Reused between crossings.
#[derive(Default)]
pub struct Answers {
    nums: Vec<f64>,
    text: String,
    results: Vec<Res<(Range<u32>, Range<u32>)>>,
    /// The `nums` sent to JavaScript (answers and 0s in call order).
    out: Vec<f64>,
}

impl Answers {
    fn clear(&mut self) {
        self.nums.clear();
        self.text.clear();
        self.results.clear();
    }

    /// Every call refused with `e` (a closed ledger).
    pub fn refuse_all(&mut self, n: usize, e: &Error) {
        self.clear();
        self.results.extend((0..n).map(|_| Err(e.clone())));
    }

    /// Writes one answer (`1` and the reservation, see the module doc).
    fn push(&mut self, a: &Answered<'_>) -> (Range<u32>, Range<u32>) {
        let (n0, t0) = (self.nums.len() as u32, self.text.len() as u32);
        let lines = a.lines();
        self.nums.extend_from_slice(&[
            1.0,
            status_index(a.status),
            a.created_at as f64,
            a.expires_at as f64,
            a.finished_at.map_or(-1.0, |t| t as f64),
            a.created.map_or(-1.0, |c| if c { 1.0 } else { 0.0 }),
            lines.len() as f64,
        ]);
        for l in lines {
            self.nums
                .extend_from_slice(&[utf16_len(l.sku), utf16_len(l.warehouse), l.qty as f64]);
            self.text.push_str(l.sku);
            self.text.push_str(l.warehouse);
        }
        (n0..self.nums.len() as u32, t0..self.text.len() as u32)
    }
}

/// The buffers of crossings answered inline.
#[derive(Default)]
pub struct Scratch {
    pub calls: Calls,
    pub answers: Vec<Answers>,
}

impl Scratch {
    /// `n` emptied answer buffers.
    pub fn answers(&mut self, n: usize) -> &mut [Answers] {
        self.answers.resize_with(n, Answers::default);
        self.answers.iter_mut().for_each(Answers::clear);
        &mut self.answers
    }
}

/// Runs the calls of `batches` in order, with one core call (one wait for the log) per up to
/// 10,000 calls, and leaves each batch's answers in `answers` (resized to match).
pub fn run(ledger: &stockledger::Ledger, batches: &[&Calls], answers: &mut Vec<Answers>) {
    answers.resize_with(batches.len(), Answers::default);
    answers.iter_mut().for_each(Answers::clear);
    let mut start = 0;
    while start < batches.len() {
        let mut end = start + 1;
        let mut total = batches[start].len();
        while end < batches.len() && total + batches[end].len() <= MAX_EXECUTE {
            total += batches[end].len();
            end += 1;
        }
        run_group(ledger, &batches[start..end], &mut answers[start..end]);
        start = end;
    }
}

/// One core call for a group of batches of at most 10,000 calls in all.
fn run_group(ledger: &stockledger::Ledger, batches: &[&Calls], answers: &mut [Answers]) {
    let lines: Vec<Vec<LineRef>> = batches.iter().map(|b| b.line_refs()).collect();
    let mut calls = Vec::with_capacity(batches.iter().map(|b| b.len()).sum());
    // The first call index of each batch, to send each answer to its batch.
    let mut firsts = Vec::with_capacity(batches.len());
    for (b, l) in batches.iter().zip(&lines) {
        firsts.push(calls.len());
        b.push_refs(l, &mut calls);
    }
    let batch_of = |i: usize| firsts.partition_point(|&f| f <= i) - 1;
    let results = ledger.execute_answered(&calls, |i, a| {
        let k = batch_of(i);
        (k, answers[k].push(a))
    });
    match results {
        Ok(results) => {
            for (i, r) in results.into_iter().enumerate() {
                match r {
                    Ok((k, ranges)) => answers[k].results.push(Ok(ranges)),
                    Err(e) => answers[batch_of(i)].results.push(Err(e)),
                }
            }
        }
        Err(e) => {
            for (b, a) in batches.iter().zip(answers.iter_mut()) {
                a.refuse_all(b.len(), &e);
            }
        }
    }
}

fn status_index(s: Status) -> f64 {
    match s {
        Status::Reserved => 0.0,
        Status::Paid => 1.0,
        Status::Released => 2.0,
        Status::Expired => 3.0,
    }
}

fn utf16_len(s: &str) -> f64 {
    if s.is_ascii() {
        s.len() as f64
    } else {
        s.encode_utf16().count() as f64
    }
}

/// The answers of a batch as `[text, nums, errors]`.
pub fn encode<'e>(env: &'e Env, a: &mut Answers) -> napi::Result<Unknown<'e>> {
    let e = env.raw();
    let mut errs = std::ptr::null_mut();
    check_status!(unsafe { sys::napi_create_array(e, &mut errs) })?;
    a.out.clear();
    // The answers' text is sent as it is when the successes tile it in order (always, but
    // after a log failure that turned successes into errors).
    let mut tiled = 0u32;
    for (i, r) in a.results.iter().enumerate() {
        match r {
            Ok((nums, text)) => {
                a.out
                    .extend_from_slice(&a.nums[nums.start as usize..nums.end as usize]);
                if tiled == text.start {
                    tiled = text.end;
                } else {
                    tiled = u32::MAX;
                }
            }
            Err(err) => {
                a.out.push(0.0);
                let v = errors::to_js_value(env, err);
                check_status!(unsafe { sys::napi_set_element(e, errs, i as u32, v) })?;
            }
        }
    }
    let js_text = if tiled as usize == a.text.len() {
        js_string(env, &a.text)?
    } else {
        js_string(env, &retiled(a))?
    };
    let js_nums = float64_array(env, &a.out)?;

    let mut out = std::ptr::null_mut();
    check_status!(unsafe { sys::napi_create_array_with_length(e, 3, &mut out) })?;
    for (i, v) in [js_text, js_nums, errs].into_iter().enumerate() {
        check_status!(unsafe { sys::napi_set_element(e, out, i as u32, v) })?;
    }
    Ok(unsafe { Unknown::from_raw_unchecked(e, out) })
}

/// The text of the successes only, in order.
fn retiled(a: &Answers) -> String {
    let mut s = String::new();
    for (_, t) in a.results.iter().flatten() {
        s.push_str(&a.text[t.start as usize..t.end as usize]);
    }
    s
}

fn js_string(env: &Env, text: &str) -> napi::Result<sys::napi_value> {
    let mut v = std::ptr::null_mut();
    check_status!(unsafe {
        if text.is_ascii() {
            sys::napi_create_string_latin1(
                env.raw(),
                text.as_ptr().cast(),
                text.len() as isize,
                &mut v,
            )
        } else {
            sys::napi_create_string_utf8(
                env.raw(),
                text.as_ptr().cast(),
                text.len() as isize,
                &mut v,
            )
        }
    })?;
    Ok(v)
}

/// A new `Float64Array` holding `nums`.
pub fn float64_array(env: &Env, nums: &[f64]) -> napi::Result<sys::napi_value> {
    let e = env.raw();
    let bytes = std::mem::size_of_val(nums);
    let mut data = std::ptr::null_mut();
    let mut ab = std::ptr::null_mut();
    check_status!(unsafe { sys::napi_create_arraybuffer(e, bytes, &mut data, &mut ab) })?;
    if bytes > 0 {
        // SAFETY: a fresh buffer of `bytes` bytes; a byte copy has no alignment trouble.
        unsafe {
            std::ptr::copy_nonoverlapping(nums.as_ptr().cast::<u8>(), data.cast::<u8>(), bytes)
        };
    }
    let mut v = std::ptr::null_mut();
    check_status!(unsafe {
        sys::napi_create_typedarray(
            e,
            sys::TypedarrayType::float64_array,
            nums.len(),
            ab,
            0,
            &mut v,
        )
    })?;
    Ok(v)
}
