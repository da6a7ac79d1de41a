//! What a supervisor that waits for hours keeps resident.

/// Drops this process's page mappings of program files (its own and shared
/// libraries') that starting up touched. A supervisor then waits for hours on
/// a few pages of code: the rest would only count in its resident memory. The
/// pages stay in the page cache and fault back in, cheaply, if ever needed.
///
/// Only mappings that hold nothing but the file's own bytes are dropped: not
/// writable, and without a single private (copy-on-write) page, resident or
/// swapped. Relocated read-only data has such pages and is kept; for the rest,
/// MADV_DONTNEED cannot lose anything.
pub fn release_startup_pages() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let mut current: Option<(usize, usize)> = None;
    let mut private_pages = false;
    let release = |range: Option<(usize, usize)>, private: bool| {
        if let (Some((start, end)), false) = (range, private) {
            // SAFETY: a whole mapping of this process, backed by a file, not
            // writable, with no private page: MADV_DONTNEED only zaps its page
            // table entries, and every later access re-reads the same bytes.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        }
    };
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or("");
        if let Some((start, end)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            release(current.take(), private_pages);
            private_pages = false;
            let perms = fields.next().unwrap_or("");
            let path = fields.nth(3).unwrap_or("");
            let readonly_file = perms.starts_with('r')
                && !perms.contains('w')
                && perms.ends_with('p')
                && path.starts_with('/');
            if readonly_file
                && let (Ok(s), Ok(e)) = (
                    usize::from_str_radix(start, 16),
                    usize::from_str_radix(end, 16),
                )
            {
                current = Some((s, e));
            }
        } else if matches!(first, "Anonymous:" | "Swap:" | "Private_Dirty:")
            && fields.next() != Some("0")
        {
            private_pages = true;
        }
    }
    release(current, private_pages);
}
