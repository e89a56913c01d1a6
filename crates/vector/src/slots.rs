//! [`SlotMap`]: slot → value, the one map both the graph's search copy (`flat.rs`, slot → row) and the live
//! set (`index.rs`, slot → document id) are kept in.

/// A map from slot to value stored as a vector indexed by slot: slots are handed out consecutively, so this
/// is dense, and a lookup is an array access (the exact scan does two per vector).
#[derive(Debug, Clone)]
pub(crate) struct SlotMap<T> {
    items: Vec<Option<T>>,
    len: usize,
}

impl<T> Default for SlotMap<T> {
    fn default() -> Self {
        SlotMap { items: Vec::new(), len: 0 }
    }
}

impl<T> SlotMap<T> {
    pub(crate) fn get(&self, slot: u64) -> Option<&T> {
        self.items.get(usize::try_from(slot).ok()?).and_then(Option::as_ref)
    }

    pub(crate) fn contains(&self, slot: u64) -> bool {
        self.get(slot).is_some()
    }

    pub(crate) fn insert(&mut self, slot: u64, value: T) {
        let i = usize::try_from(slot).expect("slot fits in memory");
        if i >= self.items.len() {
            self.items.resize_with(i + 1, || None);
        }
        if self.items[i].replace(value).is_none() {
            self.len += 1;
        }
    }

    pub(crate) fn remove(&mut self, slot: u64) -> Option<T> {
        let taken = self.items.get_mut(usize::try_from(slot).ok()?)?.take();
        self.len -= taken.is_some() as usize;
        taken
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &T)> {
        self.items.iter().enumerate().filter_map(|(i, v)| v.as_ref().map(|v| (i as u64, v)))
    }
}

impl<T> FromIterator<(u64, T)> for SlotMap<T> {
    fn from_iter<I: IntoIterator<Item = (u64, T)>>(iter: I) -> Self {
        let mut m = SlotMap::default();
        for (k, v) in iter {
            m.insert(k, v);
        }
        m
    }
}
