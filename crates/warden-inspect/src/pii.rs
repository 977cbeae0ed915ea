//! Personal data with validators: payment cards (Luhn and issuer ranges),
//! IBAN (ISO 13616 length per country and mod 97), US SSN (SSA allocation
//! rules), e-mail, phone numbers (E.164, North American and national forms),
//! IP addresses, and keyword-led values (dates of birth, passport and
//! driver's licence numbers, bare nine-digit SSNs).

use crate::text::is_word;

/// Keywords that make the value after them personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keyword {
    Birth,
    Passport,
    DriverLicense,
    Ssn,
}

pub(crate) static KEYWORDS: &[(&str, Keyword)] = &[
    ("born", Keyword::Birth),
    ("birth", Keyword::Birth),
    ("birthday", Keyword::Birth),
    ("dob", Keyword::Birth),
    ("d.o.b", Keyword::Birth),
    ("passport", Keyword::Passport),
    ("driver's license", Keyword::DriverLicense),
    ("drivers license", Keyword::DriverLicense),
    ("driver license", Keyword::DriverLicense),
    ("driver's licence", Keyword::DriverLicense),
    ("driving licence", Keyword::DriverLicense),
    ("driving license", Keyword::DriverLicense),
    ("licence number", Keyword::DriverLicense),
    ("license number", Keyword::DriverLicense),
    ("ssn", Keyword::Ssn),
    ("social security", Keyword::Ssn),
];

pub(crate) struct Hit {
    pub kind: &'static str,
    pub start: usize,
    pub end: usize,
    pub confidence: f32,
}

pub(crate) fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// Issuer by IIN range and the lengths that issuer uses.
pub(crate) fn card_issuer(d: &[u8]) -> Option<&'static str> {
    let n = d.len();
    let pre = |k: usize| -> u32 { d[..k.min(n)].iter().fold(0, |a, c| a * 10 + u32::from(c - b'0')) };
    let (p1, p2, p3, p4, p6) = (pre(1), pre(2), pre(3), pre(4), pre(6));
    Some(match () {
        _ if p1 == 4 && matches!(n, 13 | 16 | 19) => "visa",
        _ if ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && n == 16 => "mastercard",
        _ if (p2 == 34 || p2 == 37) && n == 15 => "amex",
        _ if (p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 || (622126..=622925).contains(&p6)) && (16..=19).contains(&n) => "discover",
        // JCB: 3528-3589 today (generators use all of 35xx), 2131/1800 for the legacy 15-digit cards
        _ if (p2 == 35 && (16..=19).contains(&n)) || ((p4 == 2131 || p4 == 1800) && n == 15) => "jcb",
        _ if ((300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39) && (14..=19).contains(&n) => "diners",
        _ if p2 == 62 && (16..=19).contains(&n) => "unionpay",
        _ if (p2 == 50 || (56..=69).contains(&p2)) && (12..=19).contains(&n) => "maestro",
        _ => return None,
    })
}

/// SSA rules: area 001-899 except 666, group 01-99, serial 0001-9999.
pub(crate) fn ssn_valid(d: &[u8]) -> bool {
    if d.len() != 9 {
        return false;
    }
    let num = |r: std::ops::Range<usize>| d[r].iter().fold(0u32, |a, c| a * 10 + u32::from(c - b'0'));
    let (area, group, serial) = (num(0..3), num(3..5), num(5..9));
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

static IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"LY", 25),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SC", 31),
    (b"SD", 18),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

/// ISO 13616: known country, its length, and the mod-97 check.
pub(crate) fn iban_valid(compact: &[u8]) -> bool {
    let Some((_, len)) = IBAN_LENGTHS.iter().find(|(cc, _)| compact.len() >= 2 && &compact[..2] == *cc) else { return false };
    if compact.len() != *len || !compact[2..4].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut rem = 0u32;
    for &c in compact[4..].iter().chain(&compact[..4]) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    rem == 1
}

/// An IBAN whose check digits start at `digit` (two capitals before it),
/// written compact or in groups of four.
pub(crate) fn iban_at(b: &[u8], digit: usize) -> Option<Hit> {
    let s = digit.checked_sub(2)?;
    if !(b[s].is_ascii_uppercase() && b[s + 1].is_ascii_uppercase()) || (s > 0 && is_word(b[s - 1])) {
        return None;
    }
    let mut compact = Vec::with_capacity(34);
    let mut i = s;
    let mut end = s;
    while i < b.len() && compact.len() < 34 {
        let c = b[i];
        if c.is_ascii_uppercase() || c.is_ascii_digit() {
            compact.push(c);
            i += 1;
            end = i;
        } else if c == b' ' && compact.len() % 4 == 0 && i + 1 < b.len() && b[i + 1].is_ascii_alphanumeric() {
            i += 1;
        } else {
            break;
        }
    }
    // Grouped forms may run into a following word; take the longest valid prefix.
    while compact.len() >= 15 {
        if iban_valid(&compact) && !(end < b.len() && is_word(b[end])) {
            return Some(Hit { kind: "iban", start: s, end, confidence: 0.95 });
        }
        if b[end - 1] == b' ' || !b[..end].ends_with(&compact[compact.len() - 1..]) {
            return None;
        }
        compact.pop();
        end -= 1;
        while end > s && b[end - 1] == b' ' {
            end -= 1;
        }
    }
    None
}

/// A run of digits with phone/card-style separators starting at `i` (a
/// digit, or the `+`/`(` in front of one). Returns the hit, and where to
/// continue scanning.
pub(crate) fn number_at(b: &[u8], i: usize) -> (Option<Hit>, usize) {
    let n = b.len();
    let start = i;
    let mut digits: Vec<u8> = Vec::with_capacity(24);
    let mut groups: Vec<(u8, usize)> = Vec::with_capacity(8); // (separator before, group length)
    let mut j = i;
    let mut sep = 0u8;
    let mut glen = 0usize;
    let mut plus = false;
    if b[j] == b'+' {
        plus = true;
        j += 1;
    }
    while j < n && j - start < 40 {
        let c = b[j];
        if c.is_ascii_digit() {
            digits.push(c);
            glen += 1;
            j += 1;
        } else if matches!(c, b' ' | b'-' | b'.' | b'(' | b')' | b'/') && glen > 0 || (c == b'(' && glen == 0) {
            // one separator (or ") " / ")-") between digit groups
            let mut k = j + 1;
            if k < n && matches!((c, b[k]), (b')', b' ' | b'-' | b'.') | (b' ', b'(')) {
                k += 1;
            }
            if k < n && b[k].is_ascii_digit() {
                if glen > 0 {
                    groups.push((sep, glen));
                }
                sep = c;
                glen = 0;
                j = k;
            } else {
                break;
            }
        } else {
            break;
        }
    }
    if glen > 0 {
        groups.push((sep, glen));
    }
    let mut end = j;
    while end > start && !b[end - 1].is_ascii_digit() {
        end -= 1;
    }
    let next = end.max(i + 1);
    // extension: x123 / ext. 123
    let mut ext_end = end;
    if end < n && b[end] == b'x' {
        let e = end + 1 + b[end + 1..].iter().take(6).take_while(|c| c.is_ascii_digit()).count();
        if e > end + 1 {
            ext_end = e;
        }
    }
    let right_ok = ext_end >= n || !is_word(b[ext_end]);
    if digits.is_empty() || !right_ok {
        return (None, next.max(ext_end));
    }
    let nd = digits.len();
    let seps: Vec<u8> = groups.iter().skip(1).map(|g| g.0).collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.1).collect();
    let only = |allowed: &[u8]| seps.iter().all(|s| allowed.contains(s));
    let hit = |kind, confidence, e| Some(Hit { kind, start, end: e, confidence });

    // IPv4 dotted quad
    if !plus && lens.len() == 4 && only(b".") && lens.iter().all(|l| *l <= 3) {
        let ok = groups_values(&digits, &lens).iter().all(|v| *v <= 255);
        return (if ok { hit("ip_address", 0.8, end) } else { None }, next);
    }
    if !plus
        && b[start] != b'('
        && only(b" -")
        && (12..=19).contains(&nd)
        && (lens.len() == 1 || lens.iter().all(|l| (3..=6).contains(l)))
        && luhn(&digits)
        && card_issuer(&digits).is_some()
    {
        return (hit("credit_card", if lens.len() > 1 || nd >= 15 { 0.95 } else { 0.8 }, end), next);
    }
    if !plus && lens == [3, 2, 4] && only(b"- ") && seps[0] == seps[1] && ssn_valid(&digits) {
        return (hit("us_ssn", 0.85, end), next);
    }
    // Dates and times are not phone numbers.
    let datelike = lens.len() == 3 && only(b"-/.") && (lens[0] == 4 || lens[2] == 4 || lens[2] == 2) && (lens[1] <= 2);
    if datelike {
        return (None, next);
    }
    let phone = if plus {
        (8..=15).contains(&nd)
    } else if b[start] == b'(' {
        (10..=12).contains(&nd)
    } else if digits.starts_with(b"00") {
        (11..=15).contains(&nd) && lens.len() >= 3
    } else if nd == 10 && lens == [3, 3, 4] && only(b"-. ") || nd == 11 && digits[0] == b'1' && lens == [1, 3, 3, 4] {
        true
    } else if lens.len() == 1 && (nd == 10 && (digits[0] == b'0' || nanp(&digits)) || nd == 11 && digits[0] == b'0') {
        // A bare run of digits is a phone number only where the text says so.
        return (hit(PHONE_CANDIDATE, 0.6, end), next);
    } else {
        digits[0] == b'0' && (10..=11).contains(&nd) && lens.len() >= 2 && lens.iter().all(|l| *l >= 2)
    };
    if phone {
        let conf = if plus || b[start] == b'(' {
            0.9
        } else if lens.len() >= 2 {
            0.8
        } else {
            0.55
        };
        return (hit("phone", conf, ext_end), next.max(ext_end));
    }
    (None, next)
}

/// North American numbering: area code and exchange start with 2-9.
fn nanp(d: &[u8]) -> bool {
    d.len() == 10 && d[0] >= b'2' && d[3] >= b'2'
}

/// A bare digit run that is a phone number if a phone word precedes it.
pub(crate) const PHONE_CANDIDATE: &str = "phone?";

const PHONE_WORDS: &[&[u8]] =
    &[b"phone", b"call", b"tel", b"mobile", b"cell", b"sms", b"text me", b"message", b"whatsapp", b"fax", b"contact", b"reach", b"dial"];

/// Labels written right after a number in contact lists (`0449006866 office`).
const PHONE_LABELS: &[&[u8]] = &[b"office", b"home", b"work", b"direct"];

/// Whether a phone word appears in the 48 bytes before the number at
/// `start..end`, or a phone label right after it.
pub(crate) fn phone_context(b: &[u8], start: usize, end: usize) -> bool {
    let has = |w: &[u8], words: &[&[u8]]| words.iter().any(|p| w.windows(p.len()).any(|x| x.eq_ignore_ascii_case(p)));
    let after = &b[end..(end + 3).min(b.len())];
    let label = end + after.iter().take_while(|c| matches!(c, b' ' | b'-' | b'(' | b'\t')).count();
    let label = &b[label..(label + 10).min(b.len())];
    has(&b[start.saturating_sub(48)..start], PHONE_WORDS)
        || PHONE_WORDS.iter().chain(PHONE_LABELS).any(|p| label.len() >= p.len() && label[..p.len()].eq_ignore_ascii_case(p))
}

fn groups_values(digits: &[u8], lens: &[usize]) -> Vec<u32> {
    let mut out = Vec::with_capacity(lens.len());
    let mut k = 0;
    for l in lens {
        out.push(digits[k..k + l].iter().fold(0u32, |a, c| a * 10 + u32::from(c - b'0')));
        k += l;
    }
    out
}

/// An e-mail address around the `@` at `at`.
pub(crate) fn email_at(b: &[u8], at: usize) -> Option<Hit> {
    let local = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-');
    let mut s = at;
    while s > 0 && at - s < 64 && local(b[s - 1]) {
        s -= 1;
    }
    while s < at && b[s] == b'.' {
        s += 1;
    }
    if s == at || b[at - 1] == b'.' {
        return None;
    }
    let mut e = at + 1;
    while e < b.len() && e - at < 254 && (b[e].is_ascii_alphanumeric() || b[e] == b'.' || b[e] == b'-') {
        e += 1;
    }
    while e > at + 1 && matches!(b[e - 1], b'.' | b'-') {
        e -= 1;
    }
    let domain = &b[at + 1..e];
    let dot = memchr::memrchr(b'.', domain)?;
    let tld = &domain[dot + 1..];
    if dot == 0 || tld.len() < 2 || !tld.iter().all(u8::is_ascii_alphabetic) || domain.windows(2).any(|w| w == b"..") {
        return None;
    }
    Some(Hit { kind: "email", start: s, end: e, confidence: 0.95 })
}

/// An IPv6 address through the `:` at `colon`.
/// Also returns where the candidate run ends: no other address can start
/// inside it, so the caller resumes there.
pub(crate) fn ipv6_at(b: &[u8], colon: usize) -> (Option<Hit>, usize) {
    let mut end = colon + 1;
    let hit = ipv6_run(b, colon, &mut end);
    (hit, end)
}

fn ipv6_run(b: &[u8], colon: usize, end: &mut usize) -> Option<Hit> {
    let ch = |c: u8| c.is_ascii_hexdigit() || c == b':' || c == b'.';
    let mut s = colon;
    while s > 0 && colon - s < 40 && ch(b[s - 1]) {
        s -= 1;
    }
    let mut e = colon;
    while e < b.len() && e - s < 46 && ch(b[e]) {
        e += 1;
    }
    *end = e;
    if (s > 0 && is_word(b[s - 1])) || (e < b.len() && is_word(b[e])) {
        return None;
    }
    let cand = std::str::from_utf8(&b[s..e]).ok()?.trim_end_matches('.');
    let colons = cand.bytes().filter(|c| *c == b':').count();
    if colons < 2 || !(cand.contains("::") || colons == 7) {
        return None;
    }
    let addr: std::net::Ipv6Addr = cand.parse().ok()?;
    if addr.is_unspecified() || addr.is_loopback() {
        return None;
    }
    Some(Hit { kind: "ip_address", start: s, end: s + cand.len(), confidence: 0.8 })
}

const MONTHS: &[&str] = &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];

/// The value a keyword introduces, looked for in the next few bytes.
pub(crate) fn after_keyword(b: &[u8], kw_end: usize, kw: Keyword) -> Option<Hit> {
    let window = &b[kw_end..(kw_end + 48).min(b.len())];
    match kw {
        Keyword::Birth => date_in(window).map(|(s, e)| Hit { kind: "date_of_birth", start: kw_end + s, end: kw_end + e, confidence: 0.8 }),
        Keyword::Passport => token_in(window, 6, 9, 5).map(|(s, e)| Hit { kind: "passport_number", start: kw_end + s, end: kw_end + e, confidence: 0.7 }),
        Keyword::DriverLicense => token_in(window, 5, 16, 4).map(|(s, e)| Hit { kind: "driver_license", start: kw_end + s, end: kw_end + e, confidence: 0.7 }),
        Keyword::Ssn => {
            let (s, e) = token_in(&window[..window.len().min(24)], 9, 11, 9)?;
            let d: Vec<u8> = window[s..e].iter().copied().filter(u8::is_ascii_digit).collect();
            ssn_valid(&d).then_some(Hit { kind: "us_ssn", start: kw_end + s, end: kw_end + e, confidence: 0.9 })
        }
    }
}

/// The first token of `min..=max` letters, digits and dashes holding at
/// least `min_digits` digits.
fn token_in(w: &[u8], min: usize, max: usize, min_digits: usize) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < w.len() {
        if w[i].is_ascii_alphanumeric() && (i == 0 || !w[i - 1].is_ascii_alphanumeric()) {
            let mut e = i;
            while e < w.len() && (w[e].is_ascii_alphanumeric() || (w[e] == b'-' && e + 1 < w.len() && w[e + 1].is_ascii_alphanumeric())) {
                e += 1;
            }
            let digits = w[i..e].iter().filter(|c| c.is_ascii_digit()).count();
            if (min..=max).contains(&(e - i)) && digits >= min_digits && (e == w.len() || !w[e].is_ascii_alphanumeric()) {
                return Some((i, e));
            }
            i = e;
        } else {
            i += 1;
        }
    }
    None
}

/// A numeric date (`1980-03-05`, `05/03/1980`, `5.3.1980`) or one with a
/// month name (`March 5, 1980`, `5 Mar 1980`).
fn date_in(w: &[u8]) -> Option<(usize, usize)> {
    for i in 0..w.len() {
        if i > 0 && w[i - 1].is_ascii_alphanumeric() {
            continue;
        }
        if w[i].is_ascii_digit() {
            let mut e = i;
            let mut parts = 0;
            let mut lens = [0usize; 3];
            while e < w.len() && parts < 3 {
                let s = e;
                while e < w.len() && w[e].is_ascii_digit() {
                    e += 1;
                }
                lens[parts] = e - s;
                parts += 1;
                if parts < 3 && e + 1 < w.len() && matches!(w[e], b'-' | b'/' | b'.') && w[e + 1].is_ascii_digit() {
                    e += 1;
                } else {
                    break;
                }
            }
            if parts == 3 && (lens[0] == 4 || lens[2] == 4 || lens[2] == 2) && lens.iter().all(|l| (1..=4).contains(l)) {
                return Some((i, e));
            }
        } else if w[i].is_ascii_alphabetic() && i + 3 <= w.len() {
            let m = w[i..i + 3].to_ascii_lowercase();
            if MONTHS.iter().any(|x| x.as_bytes() == m.as_slice()) {
                // month name, then day and year within a few characters
                let rest = &w[i..(i + 20).min(w.len())];
                let year = rest.windows(4).position(|x| x.iter().all(u8::is_ascii_digit))?;
                return Some((i, i + year + 4));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(s: &str) -> Option<(&'static str, String)> {
        let i = s.find(|c: char| c.is_ascii_digit() || c == '+' || c == '(').unwrap();
        number_at(s.as_bytes(), i).0.map(|h| (h.kind, s[h.start..h.end].to_string()))
    }

    #[test]
    fn validators() {
        assert!(luhn(b"4111111111111111") && !luhn(b"4111111111111112"));
        assert_eq!(card_issuer(b"378282246310005"), Some("amex"));
        assert!(iban_valid(b"GB82WEST12345698765432") && !iban_valid(b"GB82WEST12345698765433") && !iban_valid(b"XX82WEST12345698765432"));
        assert!(ssn_valid(b"123456789") && !ssn_valid(b"666123456") && !ssn_valid(b"123006789") && !ssn_valid(b"912345678"));
    }

    #[test]
    fn numbers() {
        assert_eq!(num("card 4111 1111 1111 1111."), Some(("credit_card", "4111 1111 1111 1111".into())));
        assert_eq!(num("card 4111 1111 1111 1112."), None);
        assert_eq!(num("ssn 123-45-6789"), Some(("us_ssn", "123-45-6789".into())));
        assert_eq!(num("call +44 20 7946 0958 now"), Some(("phone", "+44 20 7946 0958".into())));
        assert_eq!(num("(415) 555-0123"), Some(("phone", "(415) 555-0123".into())));
        assert_eq!(num("206.269.0743x9150"), Some(("phone", "206.269.0743x9150".into())));
        assert_eq!(num("host 10.1.2.3:80"), Some(("ip_address", "10.1.2.3".into())));
        assert_eq!(num("call me on 9279837542").map(|x| x.0), Some(PHONE_CANDIDATE));
        assert_eq!(num("order 1700000000"), None, "not a North American number");
        for no in ["on 2024-01-05", "at 12.03.2024", "version 300.1.2.3", "order 1234567", "total 1 234 567", "id A12345678", "1.2.3"] {
            assert_eq!(num(no), None, "{no}");
        }
        let iban = "IBAN: DE89 3704 0044 0532 0130 00, thanks";
        let h = iban_at(iban.as_bytes(), iban.find("89").unwrap()).unwrap();
        assert_eq!(&iban[h.start..h.end], "DE89 3704 0044 0532 0130 00");
    }

    #[test]
    fn emails_ipv6_keywords() {
        let t = "mail bob.smith+x@mail.example.co.uk.";
        let h = email_at(t.as_bytes(), t.find('@').unwrap()).unwrap();
        assert_eq!(&t[h.start..h.end], "bob.smith+x@mail.example.co.uk");
        assert!(email_at(b"@decorator", 0).is_none());
        assert!(email_at(b"npm i @scope/pkg@1.2", 18).is_none());
        let v6 = "from 2001:db8::8a2e:370:7334 at 12:30:45";
        let h = ipv6_at(v6.as_bytes(), v6.find(':').unwrap()).0.unwrap();
        assert_eq!(&v6[h.start..h.end], "2001:db8::8a2e:370:7334");
        assert!(ipv6_at(v6.as_bytes(), v6.rfind(':').unwrap()).0.is_none());
        let dob = "date of birth: March 5, 1980";
        let h = after_keyword(dob.as_bytes(), 13, Keyword::Birth).unwrap();
        assert_eq!(&dob[h.start..h.end], "March 5, 1980");
        let pp = "passport no. X1234567";
        let h = after_keyword(pp.as_bytes(), 8, Keyword::Passport).unwrap();
        assert_eq!(&pp[h.start..h.end], "X1234567");
    }
}

#[cfg(test)]
mod regressions {
    use crate::{Detector, Inspector};

    #[test]
    fn bare_ten_digit_numbers_are_phones_only_with_a_phone_word() {
        let pii = |t: &str| Inspector::default().scan_text(t).of(Detector::Pii).map(|f| f.kind).collect::<Vec<_>>();
        assert_eq!(pii("order 9279837542 shipped on time"), Vec::<&str>::new());
        assert_eq!(pii("invoice 0239120433"), Vec::<&str>::new());
        assert_eq!(pii("call me on 9279837542"), ["phone"]);
        assert_eq!(pii("0449006866 office"), ["phone"]);
    }
}
