//! The product's vocabulary: what can be wrong with a car (`Part`, `Position`, `DamageType`), one
//! problem on it (`Finding`) and the customer's language (`Lang`). Closed sets with stable wire ids
//! (snake_case); every layer (intake, vision, catalogue, pricing, HQ) speaks these and nothing else.
//! Pure: no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Customer language; decides which text of a template is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    /// Chinese as soon as the text has a CJK character; English otherwise.
    pub fn detect(text: &str) -> Lang {
        if text.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)) {
            Lang::Zh
        } else {
            Lang::En
        }
    }
}

/// Declares a closed vocabulary enum with its wire ids (snake_case) and Chinese names.
macro_rules! vocab {
    ($name:ident { $($var:ident = $id:literal / $zh:literal),+ $(,)? }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($var),+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$var),+];
            pub fn id(self) -> &'static str { match self { $($name::$var => $id),+ } }
            pub fn name_zh(self) -> &'static str { match self { $($name::$var => $zh),+ } }
            pub fn from_id(s: &str) -> Option<$name> { match s { $($id => Some($name::$var),)+ _ => None } }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.id()) }
        }
    };
}

vocab!(Part {
    Bumper = "bumper" / "保险杠",
    Hood = "hood" / "发动机盖",
    TrunkLid = "trunk_lid" / "后备箱盖",
    Roof = "roof" / "车顶",
    Windshield = "windshield" / "前挡风玻璃",
    RearWindshield = "rear_windshield" / "后挡风玻璃",
    Door = "door" / "车门",
    Fender = "fender" / "翼子板",
    QuarterPanel = "quarter_panel" / "后叶子板",
    Headlight = "headlight" / "大灯",
    Taillight = "taillight" / "尾灯",
    Mirror = "mirror" / "后视镜",
    WheelRim = "wheel_rim" / "轮毂",
    Tire = "tire" / "轮胎",
    Engine = "engine" / "发动机",
    Transmission = "transmission" / "变速箱",
    Brakes = "brakes" / "刹车",
    Suspension = "suspension" / "悬挂",
    Steering = "steering" / "转向",
    AirConditioning = "air_conditioning" / "空调",
    Electrical = "electrical" / "电气",
    Infotainment = "infotainment" / "车机",
    Other = "other" / "车辆",
});

vocab!(Position {
    LeftFront = "left_front" / "左前",
    RightFront = "right_front" / "右前",
    LeftRear = "left_rear" / "左后",
    RightRear = "right_rear" / "右后",
    Front = "front" / "前",
    Rear = "rear" / "后",
    Left = "left" / "左",
    Right = "right" / "右",
});

vocab!(DamageType {
    Scratch = "scratch" / "划痕",
    Dent = "dent" / "凹陷",
    Crack = "crack" / "裂纹",
    PaintDamage = "paint_damage" / "漆面损伤",
    Broken = "broken" / "破损",
    AbnormalNoise = "abnormal_noise" / "异响",
    Leak = "leak" / "漏液",
    WarningLight = "warning_light" / "故障灯",
    Vibration = "vibration" / "抖动",
    NotWorking = "not_working" / "不工作",
    Other = "other" / "其他问题",
});

impl Part {
    /// Body panels and glass: damage there is assessed from photos.
    pub fn is_body(self) -> bool {
        matches!(
            self,
            Part::Bumper
                | Part::Hood
                | Part::TrunkLid
                | Part::Roof
                | Part::Windshield
                | Part::RearWindshield
                | Part::Door
                | Part::Fender
                | Part::QuarterPanel
                | Part::Headlight
                | Part::Taillight
                | Part::Mirror
                | Part::WheelRim
                | Part::Tire
        )
    }
}

impl Position {
    pub fn name_en(self) -> &'static str {
        match self {
            Position::LeftFront => "left front",
            Position::RightFront => "right front",
            Position::LeftRear => "left rear",
            Position::RightRear => "right rear",
            Position::Front => "front",
            Position::Rear => "rear",
            Position::Left => "left",
            Position::Right => "right",
        }
    }
}

/// One problem on the car. The first six fields are the extraction schema of issue 4; `facts`
/// holds the other facts the dialogue collects (dent size, which warning light, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub part: Part,
    pub position: Option<Position>,
    pub damage_type: DamageType,
    pub length_cm: Option<f64>,
    pub primer_visible: Option<bool>,
    pub occurs_when: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub facts: BTreeMap<String, String>,
}

impl Finding {
    pub fn new(part: Part, position: Option<Position>, damage_type: DamageType) -> Finding {
        Finding { part, position, damage_type, length_cm: None, primer_visible: None, occurs_when: None, facts: BTreeMap::new() }
    }

    /// "右前车门" / "right front door" for questions.
    pub fn subject(&self, lang: Lang) -> String {
        match lang {
            Lang::Zh => {
                let pos = self.position.map(|p| p.name_zh()).unwrap_or("");
                format!("{pos}{}", self.part.name_zh())
            }
            Lang::En => {
                let part = self.part.id().replace('_', " ");
                match self.position {
                    Some(p) => format!("{} {part}", p.name_en()),
                    None => part,
                }
            }
        }
    }
}
