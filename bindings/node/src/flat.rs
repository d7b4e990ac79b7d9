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

use napi::bindgen_prelude::Unknown;
use napi::{check_status, sys, Env, JsValue};
use stockledger::{Command, Error, Line, Status};

use crate::batch::Done;
use crate::errors;

type Res<T> = std::result::Result<T, Error>;

/// Most calls in one crossing; `index.js` crosses at this many at the latest.
pub const MAX_CALLS: usize = 4096;

fn malformed() -> napi::Error {
    napi::Error::from_reason("stockledger: malformed call batch (internal)")
}

/// The commands of a batch, in call order.
pub fn decode(env: &Env, text: &Unknown, nums: &Unknown) -> napi::Result<Vec<Command>> {
    let e = env.raw();
    let mut len = 0usize;
    check_status!(unsafe {
        sys::napi_get_value_string_utf16(e, text.raw(), std::ptr::null_mut(), 0, &mut len)
    })?;
    let mut buf = vec![0u16; len + 1];
    check_status!(unsafe {
        sys::napi_get_value_string_utf16(e, text.raw(), buf.as_mut_ptr(), len + 1, &mut len)
    })?;
    buf.truncate(len);

    let mut kind = 0;
    let mut n = 0usize;
    let mut data = std::ptr::null_mut();
    let mut ab = std::ptr::null_mut();
    let mut offset = 0usize;
    check_status!(unsafe {
        sys::napi_get_typedarray_info(
            e,
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
    let nums: &[f64] = if n == 0 {
        &[]
    } else {
        // SAFETY: a live Float64Array of `n` elements; read before anything can run JavaScript.
        unsafe { std::slice::from_raw_parts(data as *const f64, n) }
    };

    let mut cmds = Vec::new();
    let mut it = nums.iter().copied();
    let mut num = || -> napi::Result<f64> { it.next().ok_or_else(malformed) };
    let mut t = 0usize;
    let mut string = |len: f64| -> napi::Result<String> {
        let len = len as usize;
        let s = buf.get(t..t + len).ok_or_else(malformed)?;
        t += len;
        if s.iter().all(|&u| u < 0x80) {
            // ASCII (every key the core accepts): a byte copy instead of decoding UTF-16
            // character by character into a growing String.
            String::from_utf8(s.iter().map(|&u| u as u8).collect()).map_err(|_| malformed())
        } else {
            // Lone surrogates become U+FFFD, as napi's UTF-8 read of the string does.
            Ok(String::from_utf16_lossy(s))
        }
    };
    while let Ok(kind) = num() {
        let order_id = string(num()?)?;
        cmds.push(match kind as u32 {
            0 => {
                let ttl = num()?;
                let count = num()? as usize;
                let mut lines = Vec::with_capacity(count);
                for _ in 0..count {
                    let sku = string(num()?)?;
                    let warehouse = string(num()?)?;
                    let qty = num()? as u64;
                    lines.push(Line {
                        sku,
                        warehouse,
                        qty,
                    });
                }
                Command::Reserve {
                    order_id,
                    lines,
                    ttl_seconds: if ttl < 0.0 {
                        stockledger::limits::DEFAULT_TTL_SECONDS
                    } else {
                        ttl as u64
                    },
                }
            }
            1 => Command::Commit { order_id },
            2 => Command::Release { order_id },
            _ => return Err(malformed()),
        });
        if cmds.len() > MAX_CALLS {
            return Err(malformed());
        }
    }
    Ok(cmds)
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
pub fn encode<'e>(env: &'e Env, results: Vec<Res<Done>>) -> napi::Result<Unknown<'e>> {
    let e = env.raw();
    let mut text = String::new();
    let mut nums: Vec<f64> = Vec::with_capacity(results.len() * 10);
    let mut errs = std::ptr::null_mut();
    check_status!(unsafe { sys::napi_create_array(e, &mut errs) })?;
    for (i, r) in results.into_iter().enumerate() {
        let r = match r {
            Ok(Done::Reservation(r, created)) => Ok((r, created)),
            Ok(_) => Err(errors::invalid("call", "internal: unexpected outcome")),
            Err(e) => Err(e),
        };
        match r {
            Ok((r, created)) => {
                nums.extend_from_slice(&[
                    1.0,
                    status_index(r.status),
                    r.created_at as f64,
                    r.expires_at as f64,
                    r.finished_at.map_or(-1.0, |t| t as f64),
                    created.map_or(-1.0, |c| if c { 1.0 } else { 0.0 }),
                    r.lines.len() as f64,
                ]);
                for l in &r.lines {
                    nums.extend_from_slice(&[
                        utf16_len(&l.sku),
                        utf16_len(&l.warehouse),
                        l.qty as f64,
                    ]);
                    text.push_str(&l.sku);
                    text.push_str(&l.warehouse);
                }
            }
            Err(err) => {
                nums.push(0.0);
                let v = errors::to_js_value(env, &err);
                check_status!(unsafe { sys::napi_set_element(e, errs, i as u32, v) })?;
            }
        }
    }

    let mut js_text = std::ptr::null_mut();
    check_status!(unsafe {
        if text.is_ascii() {
            sys::napi_create_string_latin1(
                e,
                text.as_ptr().cast(),
                text.len() as isize,
                &mut js_text,
            )
        } else {
            sys::napi_create_string_utf8(e, text.as_ptr().cast(), text.len() as isize, &mut js_text)
        }
    })?;

    let bytes = nums.len() * std::mem::size_of::<f64>();
    let mut data = std::ptr::null_mut();
    let mut ab = std::ptr::null_mut();
    check_status!(unsafe { sys::napi_create_arraybuffer(e, bytes, &mut data, &mut ab) })?;
    if bytes > 0 {
        // SAFETY: a fresh buffer of `bytes` bytes; f64 slices have no alignment trouble with
        // a byte copy.
        unsafe {
            std::ptr::copy_nonoverlapping(nums.as_ptr().cast::<u8>(), data.cast::<u8>(), bytes)
        };
    }
    let mut js_nums = std::ptr::null_mut();
    check_status!(unsafe {
        sys::napi_create_typedarray(
            e,
            sys::TypedarrayType::float64_array,
            nums.len(),
            ab,
            0,
            &mut js_nums,
        )
    })?;

    let mut out = std::ptr::null_mut();
    check_status!(unsafe { sys::napi_create_array_with_length(e, 3, &mut out) })?;
    for (i, v) in [js_text, js_nums, errs].into_iter().enumerate() {
        check_status!(unsafe { sys::napi_set_element(e, out, i as u32, v) })?;
    }
    Ok(unsafe { Unknown::from_raw_unchecked(e, out) })
}
