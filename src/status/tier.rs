//! Which tier served a hit, and which tiers a rule's entries may live in.

/// Which tier served a hit, by the name `Cache-Status` shows (`detail=l1`). Each tier has a
/// fixed slot, so counting a hit by tier is one atomic add.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tier {
    name: &'static str,
    slot: usize,
}

impl Tier {
    /// The in-process memory store.
    pub const L1: Tier = Tier {
        name: "l1",
        slot: 0,
    };
    /// The shared tier (Redis).
    pub const L2: Tier = Tier {
        name: "l2",
        slot: 1,
    };
    /// The persistent tier on local disk.
    pub const DISK: Tier = Tier {
        name: "disk",
        slot: 2,
    };
    /// How many tier slots there are.
    pub const SLOTS: usize = 3;

    /// The tier's name.
    pub fn as_str(self) -> &'static str {
        self.name
    }

    /// The tier's slot (0..[`Tier::SLOTS`]).
    pub fn slot(self) -> usize {
        self.slot
    }

    /// The tier a rule's `tiers` names: `memory`, `disk` or `redis`.
    pub fn from_config_name(name: &str) -> Option<Tier> {
        match name {
            "memory" => Some(Tier::L1),
            "disk" => Some(Tier::DISK),
            "redis" => Some(Tier::L2),
            _ => None,
        }
    }
}

/// The tiers a rule's entries may live in (`tiers = ["memory", "disk"]`): every tier by
/// default.
///
/// ```
/// use larder::status::{Tier, TierSet};
/// let set = TierSet::of(&[Tier::L1, Tier::DISK]);
/// assert!(set.contains(Tier::DISK) && !set.contains(Tier::L2));
/// assert!(TierSet::ALL.contains(Tier::L2));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TierSet(u8);

impl TierSet {
    /// Every tier.
    pub const ALL: TierSet = TierSet((1 << Tier::SLOTS) - 1);

    /// These tiers.
    pub fn of(tiers: &[Tier]) -> TierSet {
        TierSet(tiers.iter().fold(0, |set, t| set | 1 << t.slot()))
    }

    /// Whether `tier` is in the set.
    pub fn contains(self, tier: Tier) -> bool {
        self.0 & 1 << tier.slot() != 0
    }
}

/// When a rule's entries reach the tiers (`write = "through" | "back" | "around"`).
///
/// ```
/// use larder::status::WritePolicy;
/// assert_eq!(WritePolicy::parse("around"), Ok(WritePolicy::Around));
/// assert!(WritePolicy::Back.answers_first() && !WritePolicy::Around.in_memory());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WritePolicy {
    /// Every tier holds the entry before the answer completes.
    Through,
    /// Memory at once; the client gets its answer, then the disk and Redis writes follow.
    Back,
    /// Only the tiers below memory are written; memory fills on the first read.
    Around,
}

impl WritePolicy {
    /// The policy a config value names.
    pub fn parse(text: &str) -> Result<WritePolicy, String> {
        match text {
            "through" => Ok(WritePolicy::Through),
            "back" => Ok(WritePolicy::Back),
            "around" => Ok(WritePolicy::Around),
            _ => Err("expected \"through\", \"back\" or \"around\"".into()),
        }
    }

    /// The config value.
    pub fn as_str(self) -> &'static str {
        match self {
            WritePolicy::Through => "through",
            WritePolicy::Back => "back",
            WritePolicy::Around => "around",
        }
    }

    /// Whether the fill writes memory.
    pub fn in_memory(self) -> bool {
        self != WritePolicy::Around
    }

    /// Whether the answer goes out before the tiers below memory are written.
    pub fn answers_first(self) -> bool {
        self == WritePolicy::Back
    }
}

impl Default for TierSet {
    fn default() -> Self {
        TierSet::ALL
    }
}
