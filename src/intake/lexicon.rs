//! The deterministic Chinese + English lexicon pass: the backbone of extraction.
//!
//! Owns the word tables (parts, sides, damage words, situations, warning lights), number and
//! unit parsing (厘米/公分/cm/米/一米/十几公分…), and the clause-level rules that turn hits
//! into findings ("右边两个门" → right front and right rear door; a symptom without a part takes
//! the part its situation implies, else the previous part of the same message).
//!
//! Matching works on byte ranges of the lower-cased text; each range is used by at most one
//! hit, longest match first, so "后视镜" is a mirror, never "rear", and "开关门" is a situation,
//! never a door.

use crate::domain::numerals::{digit as cn_digit, value as cn_number};
use std::sync::OnceLock;

use super::homophone::Homophones;
use super::{DamageType, Finding, Part};
use crate::intake::Position;

/// Facts said without naming a part: usually the answer to our last question.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LooseFacts {
    pub length_cm: Option<f64>,
    /// A number without unit ("30左右"): a length only if we just asked for one.
    pub bare_number: Option<f64>,
    pub primer_visible: Option<bool>,
    pub paint_broken: Option<bool>,
    pub occurs_when: Option<String>,
    pub which_light: Option<String>,
    pub since_when: Option<String>,
    pub leak_fluid: Option<String>,
    /// Side words in a clause that named nothing else ("…，右边的").
    pub side_only: Option<Position>,
}

impl LooseFacts {
    pub fn is_empty(&self) -> bool {
        *self == LooseFacts::default()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LexResult {
    pub findings: Vec<Finding>,
    pub loose: LooseFacts,
    /// The lexicon could not place something (a symptom with no part, a part with no symptom).
    pub unsure: bool,
    /// The text mentions a problem at all (damage word or symptom phrase).
    pub has_problem_words: bool,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Lat {
    L,
    R,
}
#[derive(Clone, Copy, PartialEq, Debug)]
enum Lon {
    F,
    B,
}

// (pattern, normalised text, implied part, needs a time marker like 时/when to count)
const SITUATIONS: &[(&str, &str, Option<Part>, bool)] = &[
    ("开关门", "开关门", Some(Part::Door), false),
    ("开门关门", "开关门", Some(Part::Door), false),
    ("开门", "开门", Some(Part::Door), false),
    ("关门", "关门", Some(Part::Door), false),
    ("开关车门", "开关门", Some(Part::Door), false),
    ("踩刹车", "踩刹车", Some(Part::Brakes), false),
    ("刹车", "刹车", Some(Part::Brakes), true),
    ("制动", "刹车", Some(Part::Brakes), true),
    ("转弯", "转弯", Some(Part::Steering), false),
    ("打方向", "打方向", Some(Part::Steering), false),
    ("打方向盘", "打方向", Some(Part::Steering), false),
    ("打满方向", "打满方向", Some(Part::Steering), false),
    ("方向打满", "打满方向", Some(Part::Steering), false),
    ("方向打死", "打满方向", Some(Part::Steering), false),
    ("方向盘打死", "打满方向", Some(Part::Steering), false),
    ("打死方向", "打满方向", Some(Part::Steering), false),
    ("掉头", "掉头", Some(Part::Steering), false),
    ("搓板路", "搓板路", Some(Part::Suspension), false),
    ("过减速带", "过减速带", Some(Part::Suspension), false),
    ("过坎", "过坎", Some(Part::Suspension), false),
    ("过坑", "过坑", Some(Part::Suspension), false),
    ("坑洼", "颠簸路面", Some(Part::Suspension), false),
    ("颠簸路", "颠簸路面", Some(Part::Suspension), false),
    ("颠簸", "颠簸路面", Some(Part::Suspension), false),
    ("坑洼路", "颠簸路面", Some(Part::Suspension), false),
    ("起步", "起步", Some(Part::Transmission), false),
    ("加速", "加速", None, false),
    ("高速", "高速", Some(Part::Tire), true),
    ("高速上", "高速上", None, false),
    ("上高速", "上高速", None, false),
    ("跑高速", "跑高速", None, false),
    ("怠速", "怠速", Some(Part::Engine), false),
    ("等红灯", "等红灯", Some(Part::Engine), false),
    ("冷车启动", "冷车启动", Some(Part::Engine), false),
    ("冷车", "冷车", Some(Part::Engine), false),
    ("启动", "启动", Some(Part::Engine), true),
    ("点火", "启动", Some(Part::Engine), true),
    ("倒车", "倒车", None, false),
    ("挂倒挡", "挂倒挡", Some(Part::Transmission), false),
    ("挂倒档", "挂倒挡", Some(Part::Transmission), false),
    ("换挡", "换挡", Some(Part::Transmission), false),
    // "二挡升三挡的时候".
    ("挡升", "升挡", Some(Part::Transmission), false),
    ("升挡", "升挡", Some(Part::Transmission), false),
    ("挡降", "降挡", Some(Part::Transmission), false),
    ("降挡", "降挡", Some(Part::Transmission), false),
    ("换档", "换挡", Some(Part::Transmission), false),
    ("挂挡", "挂挡", Some(Part::Transmission), false),
    ("挂r挡", "挂倒挡", Some(Part::Transmission), false),
    ("挂r档", "挂倒挡", Some(Part::Transmission), false),
    ("倒挡", "挂倒挡", Some(Part::Transmission), false),
    ("挂档", "挂挡", Some(Part::Transmission), false),
    ("开空调", "开空调", Some(Part::AirConditioning), false),
    ("开着空调", "开空调", Some(Part::AirConditioning), false),
    ("空调一开", "开空调", Some(Part::AirConditioning), false),
    ("下雨", "下雨", None, false),
    ("下大雨", "下大雨", None, false),
    ("踩油门", "踩油门", None, false),
    ("一脚油门", "一脚油门", None, false),
    ("油门踩到底", "油门踩到底", None, false),
    ("打到底", "打到底", Some(Part::Steering), false),
    ("坡上", "坡上", None, false),
    ("爬坡", "爬坡", None, false),
    ("上坡", "上坡", None, false),
    ("开大声", "开大声", None, false),
    ("音量调大", "音量调大", None, false),
    ("音量开大", "音量开大", None, false),
    ("rough road", "rough roads", None, false),
    ("洗车", "洗车", None, false),
    ("opening and closing", "opening/closing door", Some(Part::Door), false),
    ("open and close", "opening/closing door", Some(Part::Door), false),
    ("open or close", "opening/closing door", Some(Part::Door), false),
    ("opening the door", "opening door", Some(Part::Door), false),
    ("closing the door", "closing door", Some(Part::Door), false),
    ("braking", "braking", Some(Part::Brakes), false),
    ("when i brake", "braking", Some(Part::Brakes), false),
    ("brake", "braking", Some(Part::Brakes), true),
    ("turning", "turning", Some(Part::Steering), false),
    ("when i turn the wheel", "turning", Some(Part::Steering), false),
    ("when i turn left", "turning left", Some(Part::Steering), false),
    ("when i turn right", "turning right", Some(Part::Steering), false),
    ("pothole", "over potholes", Some(Part::Suspension), false),
    ("speed bumps", "over bumps", Some(Part::Suspension), false),
    ("over bumps", "over bumps", Some(Part::Suspension), false),
    ("bumpy road", "over bumps", Some(Part::Suspension), false),
    ("at idle", "idle", Some(Part::Engine), false),
    ("idling", "idle", Some(Part::Engine), false),
    ("cold start", "cold start", Some(Part::Engine), false),
    ("starting", "starting", Some(Part::Engine), true),
    ("on the highway", "highway", Some(Part::Tire), false),
    ("highway speed", "highway", Some(Part::Tire), false),
    ("high speed", "highway", Some(Part::Tire), false),
    ("accelerating", "accelerating", None, false),
    ("shifting", "shifting", Some(Part::Transmission), false),
    ("pulling away", "pulling away", Some(Part::Transmission), false),
    ("from a stop", "pulling away", Some(Part::Transmission), false),
    ("changing gear", "shifting", Some(Part::Transmission), false),
    ("reversing", "reversing", None, false),
    ("in reverse", "reversing", None, false),
];

const TIME_MARKERS: &[&str] = &["时", "候", "就", "每次", "一踩", "一打", "when", "while", "whenever", "every time", "at "];

// Symptom phrases that name both the part and the damage (checked before parts and damages).
const COMPOUNDS: &[(&str, Part, DamageType, Option<&str>)] = &[
    ("发动机故障灯", Part::Engine, DamageType::WarningLight, Some("engine")),
    ("发动机灯", Part::Engine, DamageType::WarningLight, Some("engine")),
    ("排放故障灯", Part::Engine, DamageType::WarningLight, Some("engine")),
    ("机油灯", Part::Engine, DamageType::WarningLight, Some("oil")),
    ("水温灯", Part::Engine, DamageType::WarningLight, Some("coolant")),
    ("胎压灯", Part::Tire, DamageType::WarningLight, Some("tire_pressure")),
    ("胎压报警", Part::Tire, DamageType::WarningLight, Some("tire_pressure")),
    ("胎压监测", Part::Tire, DamageType::WarningLight, Some("tire_pressure")),
    ("abs灯", Part::Brakes, DamageType::WarningLight, Some("abs")),
    ("刹车故障灯", Part::Brakes, DamageType::WarningLight, Some("brake")),
    ("刹车灯亮", Part::Brakes, DamageType::WarningLight, Some("brake")),
    ("刹车灯一直亮", Part::Brakes, DamageType::WarningLight, Some("brake")),
    ("刹车警示灯", Part::Brakes, DamageType::WarningLight, Some("brake")),
    ("气囊灯", Part::Electrical, DamageType::WarningLight, Some("airbag")),
    ("电瓶灯", Part::Electrical, DamageType::WarningLight, Some("battery")),
    ("充电指示灯", Part::Electrical, DamageType::WarningLight, Some("battery")),
    ("check engine", Part::Engine, DamageType::WarningLight, Some("engine")),
    ("engine light", Part::Engine, DamageType::WarningLight, Some("engine")),
    ("tire pressure light", Part::Tire, DamageType::WarningLight, Some("tire_pressure")),
    ("tyre pressure light", Part::Tire, DamageType::WarningLight, Some("tire_pressure")),
    ("tpms", Part::Tire, DamageType::WarningLight, Some("tire_pressure")),
    ("abs light", Part::Brakes, DamageType::WarningLight, Some("abs")),
    ("oil light", Part::Engine, DamageType::WarningLight, Some("oil")),
    ("battery light", Part::Electrical, DamageType::WarningLight, Some("battery")),
    ("airbag light", Part::Electrical, DamageType::WarningLight, Some("airbag")),
    ("不制冷", Part::AirConditioning, DamageType::NotWorking, None),
    ("不凉", Part::AirConditioning, DamageType::NotWorking, None),
    ("不太凉", Part::AirConditioning, DamageType::NotWorking, None),
    ("不够凉", Part::AirConditioning, DamageType::NotWorking, None),
    ("挂不进", Part::Transmission, DamageType::NotWorking, None),
    ("central locking", Part::Electrical, DamageType::NotWorking, None),
    ("吹热风", Part::AirConditioning, DamageType::NotWorking, None),
    ("还是热风", Part::AirConditioning, DamageType::NotWorking, None),
    ("冷气不冷", Part::AirConditioning, DamageType::NotWorking, None),
    ("no cold air", Part::AirConditioning, DamageType::NotWorking, None),
    ("blows warm", Part::AirConditioning, DamageType::NotWorking, None),
    ("blowing warm", Part::AirConditioning, DamageType::NotWorking, None),
    ("打不着火", Part::Engine, DamageType::NotWorking, None),
    ("打不着", Part::Engine, DamageType::NotWorking, None),
    ("启动不了", Part::Engine, DamageType::NotWorking, None),
    ("着不了车", Part::Engine, DamageType::NotWorking, None),
    ("电瓶没电", Part::Electrical, DamageType::NotWorking, None),
    ("没电了", Part::Electrical, DamageType::NotWorking, None),
    ("won't start", Part::Engine, DamageType::NotWorking, None),
    ("wont start", Part::Engine, DamageType::NotWorking, None),
    ("doesn't start", Part::Engine, DamageType::NotWorking, None),
    ("dead battery", Part::Electrical, DamageType::NotWorking, None),
    ("仪表盘黑屏", Part::Electrical, DamageType::NotWorking, None),
    ("仪表黑屏", Part::Electrical, DamageType::NotWorking, None),
    ("黑屏", Part::Infotainment, DamageType::NotWorking, None),
    ("汽油味", Part::Other, DamageType::Other, None),
    ("black screen", Part::Infotainment, DamageType::NotWorking, None),
    ("电流声", Part::Electrical, DamageType::AbnormalNoise, None),
    ("往右跑", Part::Steering, DamageType::Other, None),
    ("往左跑", Part::Steering, DamageType::Other, None),
    ("往右偏", Part::Steering, DamageType::Other, None),
    ("往左偏", Part::Steering, DamageType::Other, None),
    ("吃胎", Part::Tire, DamageType::Other, None),
    ("偏磨", Part::Tire, DamageType::Other, None),
    ("死机", Part::Infotainment, DamageType::NotWorking, None),
    ("方向盘抖", Part::Steering, DamageType::Vibration, None),
    ("方向盘发抖", Part::Steering, DamageType::Vibration, None),
    ("漏气", Part::Tire, DamageType::Leak, None),
    ("扎胎", Part::Tire, DamageType::Leak, None),
    ("扎了钉", Part::Tire, DamageType::Leak, None),
    ("扎钉", Part::Tire, DamageType::Leak, None),
    ("扎了个钉", Part::Tire, DamageType::Leak, None),
    ("扎了颗钉", Part::Tire, DamageType::Leak, None),
    ("扎了一个钉", Part::Tire, DamageType::Leak, None),
    ("扎了一颗钉", Part::Tire, DamageType::Leak, None),
    ("扎到钉", Part::Tire, DamageType::Leak, None),
    ("扎到了钉", Part::Tire, DamageType::Leak, None),
    ("a nail", Part::Tire, DamageType::Leak, None),
    ("启动困难", Part::Engine, DamageType::NotWorking, None),
    ("打火困难", Part::Engine, DamageType::NotWorking, None),
    ("不好启动", Part::Engine, DamageType::NotWorking, None),
    ("难启动", Part::Engine, DamageType::NotWorking, None),
    ("不好打火", Part::Engine, DamageType::NotWorking, None),
    ("hard to start", Part::Engine, DamageType::NotWorking, None),
    ("水温偏高", Part::Engine, DamageType::Other, None),
    ("水温高", Part::Engine, DamageType::Other, None),
    ("水温过高", Part::Engine, DamageType::Other, None),
    ("overheating", Part::Engine, DamageType::Other, None),
    ("气就跑", Part::Tire, DamageType::Leak, None),
    ("losing air", Part::Tire, DamageType::Leak, None),
    ("loses air", Part::Tire, DamageType::Leak, None),
    ("keeps going flat", Part::Tire, DamageType::Leak, None),
    ("没凉气", Part::AirConditioning, DamageType::NotWorking, None),
    ("没冷风", Part::AirConditioning, DamageType::NotWorking, None),
    ("没什么冷风", Part::AirConditioning, DamageType::NotWorking, None),
    ("不出冷风", Part::AirConditioning, DamageType::NotWorking, None),
    ("锁不上门", Part::Electrical, DamageType::NotWorking, None),
    ("锁不了门", Part::Electrical, DamageType::NotWorking, None),
    ("not cooling", Part::AirConditioning, DamageType::NotWorking, None),
    ("isn't cooling", Part::AirConditioning, DamageType::NotWorking, None),
    ("not blowing cold", Part::AirConditioning, DamageType::NotWorking, None),
    ("爆胎", Part::Tire, DamageType::Broken, None),
    ("flat tire", Part::Tire, DamageType::Leak, None),
    ("flat tyre", Part::Tire, DamageType::Leak, None),
    ("puncture", Part::Tire, DamageType::Leak, None),
    ("漏机油", Part::Engine, DamageType::Leak, None),
    ("渗油", Part::Engine, DamageType::Leak, None),
    ("漏油", Part::Engine, DamageType::Leak, None),
    ("漏防冻液", Part::Engine, DamageType::Leak, None),
    ("oil leak", Part::Engine, DamageType::Leak, None),
    ("pulls to the", Part::Steering, DamageType::Other, None),
    ("pulling to the", Part::Steering, DamageType::Other, None),
    ("leaking oil", Part::Engine, DamageType::Leak, None),
    ("异味", Part::AirConditioning, DamageType::Other, None),
    ("有味道", Part::AirConditioning, DamageType::Other, None),
    ("smells", Part::AirConditioning, DamageType::Other, None),
];

// (pattern, part, implied longitudinal side, implied lateral side)
const PARTS: &[(&str, Part, Option<Lon>, Option<Lat>)] = &[
    ("前保险杠", Part::Bumper, Some(Lon::F), None),
    ("后保险杠", Part::Bumper, Some(Lon::B), None),
    ("保险杠", Part::Bumper, None, None),
    ("保险杆", Part::Bumper, None, None),
    ("前杠", Part::Bumper, Some(Lon::F), None),
    ("后杠", Part::Bumper, Some(Lon::B), None),
    ("前脸", Part::Bumper, Some(Lon::F), None),
    // Locators: the end of the car, i.e. its bumper, unless a part is named with them (LOCATORS).
    ("车头", Part::Bumper, Some(Lon::F), None),
    ("车屁股", Part::Bumper, Some(Lon::B), None),
    ("车尾", Part::Bumper, Some(Lon::B), None),
    ("bumper", Part::Bumper, None, None),
    ("发动机盖", Part::Hood, None, None),
    ("引擎盖", Part::Hood, None, None),
    ("机盖", Part::Hood, None, None),
    ("前机盖", Part::Hood, None, None),
    ("hood", Part::Hood, None, None),
    ("bonnet", Part::Hood, None, None),
    ("后备箱盖", Part::TrunkLid, None, None),
    ("后备箱", Part::TrunkLid, None, None),
    ("后备厢", Part::TrunkLid, None, None),
    ("hatch", Part::TrunkLid, None, None),
    ("行李箱", Part::TrunkLid, None, None),
    ("尾门", Part::TrunkLid, None, None),
    ("后盖", Part::TrunkLid, None, None),
    ("trunk", Part::TrunkLid, None, None),
    ("tailgate", Part::TrunkLid, None, None),
    ("boot lid", Part::TrunkLid, None, None),
    ("车顶", Part::Roof, None, None),
    ("天窗", Part::Roof, None, None),
    ("roof", Part::Roof, None, None),
    ("前挡风玻璃", Part::Windshield, None, None),
    ("前风挡玻璃", Part::Windshield, None, None),
    ("挡风玻璃", Part::Windshield, None, None),
    ("前挡风", Part::Windshield, None, None),
    ("前风挡", Part::Windshield, None, None),
    ("前挡", Part::Windshield, None, None),
    ("windshield", Part::Windshield, None, None),
    ("windscreen", Part::Windshield, None, None),
    ("后挡风玻璃", Part::RearWindshield, None, None),
    ("后风挡玻璃", Part::RearWindshield, None, None),
    ("后挡风", Part::RearWindshield, None, None),
    ("后风挡", Part::RearWindshield, None, None),
    ("后挡", Part::RearWindshield, None, None),
    ("rear window", Part::RearWindshield, None, None),
    ("rear windscreen", Part::RearWindshield, None, None),
    ("back windscreen", Part::RearWindshield, None, None),
    ("rear glass", Part::RearWindshield, None, None),
    ("后窗玻璃", Part::RearWindshield, None, None),
    ("后窗", Part::RearWindshield, None, None),
    ("rear windshield", Part::RearWindshield, None, None),
    ("主驾驶门", Part::Door, Some(Lon::F), Some(Lat::L)),
    ("主驾门", Part::Door, Some(Lon::F), Some(Lat::L)),
    ("驾驶位车门", Part::Door, Some(Lon::F), Some(Lat::L)),
    ("驾驶座车门", Part::Door, Some(Lon::F), Some(Lat::L)),
    ("驾驶员门", Part::Door, Some(Lon::F), Some(Lat::L)),
    ("副驾驶门", Part::Door, Some(Lon::F), Some(Lat::R)),
    ("副驾门", Part::Door, Some(Lon::F), Some(Lat::R)),
    ("副驾车门", Part::Door, Some(Lon::F), Some(Lat::R)),
    ("前车门", Part::Door, Some(Lon::F), None),
    ("后车门", Part::Door, Some(Lon::B), None),
    ("前门", Part::Door, Some(Lon::F), None),
    ("后门", Part::Door, Some(Lon::B), None),
    ("车门", Part::Door, None, None),
    ("门板", Part::Door, None, None),
    ("门把手", Part::Door, None, None),
    ("门", Part::Door, None, None),
    ("driver's door", Part::Door, Some(Lon::F), Some(Lat::L)),
    ("driver door", Part::Door, Some(Lon::F), Some(Lat::L)),
    ("passenger door", Part::Door, Some(Lon::F), Some(Lat::R)),
    ("door", Part::Door, None, None),
    ("后叶子板", Part::QuarterPanel, Some(Lon::B), None),
    // Advisors' shorthand: "左后叶", "右前叶".
    ("后叶", Part::QuarterPanel, Some(Lon::B), None),
    ("前叶", Part::Fender, Some(Lon::F), None),
    ("后翼子板", Part::QuarterPanel, Some(Lon::B), None),
    ("quarter panel", Part::QuarterPanel, None, None),
    ("前翼子板", Part::Fender, Some(Lon::F), None),
    ("前叶子板", Part::Fender, Some(Lon::F), None),
    ("翼子板", Part::Fender, None, None),
    ("叶子板", Part::Fender, None, None),
    ("轮眉", Part::Fender, None, None),
    ("fender", Part::Fender, None, None),
    ("wing", Part::Fender, None, None),
    ("前大灯", Part::Headlight, Some(Lon::F), None),
    ("大灯", Part::Headlight, None, None),
    ("前灯", Part::Headlight, None, None),
    ("头灯", Part::Headlight, None, None),
    ("近光灯", Part::Headlight, None, None),
    ("远光灯", Part::Headlight, None, None),
    ("headlight", Part::Headlight, None, None),
    ("headlamp", Part::Headlight, None, None),
    ("尾灯", Part::Taillight, None, None),
    ("后尾灯", Part::Taillight, None, None),
    ("刹车灯", Part::Taillight, None, None),
    ("倒车灯", Part::Taillight, None, None),
    ("taillight", Part::Taillight, None, None),
    ("tail light", Part::Taillight, None, None),
    ("brake light", Part::Taillight, None, None),
    ("后视镜", Part::Mirror, None, None),
    ("倒车镜", Part::Mirror, None, None),
    ("反光镜", Part::Mirror, None, None),
    ("外后视镜", Part::Mirror, None, None),
    ("倒后镜", Part::Mirror, None, None),
    ("mirror", Part::Mirror, None, None),
    ("前轮毂", Part::WheelRim, Some(Lon::F), None),
    ("后轮毂", Part::WheelRim, Some(Lon::B), None),
    ("轮毂", Part::WheelRim, None, None),
    ("轮圈", Part::WheelRim, None, None),
    ("钢圈", Part::WheelRim, None, None),
    ("铝圈", Part::WheelRim, None, None),
    ("wheels", Part::WheelRim, None, None),
    ("wheel arch", Part::Fender, None, None),
    ("wheel", Part::WheelRim, None, None),
    ("rim", Part::WheelRim, None, None),
    ("alloy", Part::WheelRim, None, None),
    ("轮胎", Part::Tire, None, None),
    ("车胎", Part::Tire, None, None),
    ("前轮胎", Part::Tire, Some(Lon::F), None),
    ("后轮胎", Part::Tire, Some(Lon::B), None),
    ("前轮", Part::Tire, Some(Lon::F), None),
    ("后轮", Part::Tire, Some(Lon::B), None),
    ("轮子", Part::Tire, None, None),
    ("轱辘", Part::Tire, None, None),
    ("胎", Part::Tire, None, None),
    ("tyre", Part::Tire, None, None),
    ("tire", Part::Tire, None, None),
    ("发动机", Part::Engine, None, None),
    ("引擎", Part::Engine, None, None),
    ("机油", Part::Engine, None, None),
    ("防冻液", Part::Engine, None, None),
    ("冷却液", Part::Engine, None, None),
    ("水箱", Part::Engine, None, None),
    ("水温", Part::Engine, None, None),
    ("机头", Part::Engine, None, None),
    ("皮带", Part::Engine, None, None),
    ("coolant", Part::Engine, None, None),
    ("engine", Part::Engine, None, None),
    ("motor", Part::Engine, None, None),
    ("变速箱", Part::Transmission, None, None),
    ("变速器", Part::Transmission, None, None),
    ("波箱", Part::Transmission, None, None),
    ("离合", Part::Transmission, None, None),
    ("gearbox", Part::Transmission, None, None),
    ("transmission", Part::Transmission, None, None),
    ("clutch", Part::Transmission, None, None),
    ("刹车片", Part::Brakes, None, None),
    ("刹车盘", Part::Brakes, None, None),
    ("刹车", Part::Brakes, None, None),
    ("制动", Part::Brakes, None, None),
    ("电子手刹", Part::Brakes, None, None),
    ("手刹", Part::Brakes, None, None),
    ("parking brake", Part::Brakes, None, None),
    ("handbrake", Part::Brakes, None, None),
    ("brakes", Part::Brakes, None, None),
    ("brake", Part::Brakes, None, None),
    ("底盘", Part::Suspension, None, None),
    ("减震器", Part::Suspension, None, None),
    ("减震", Part::Suspension, None, None),
    ("避震", Part::Suspension, None, None),
    ("悬挂", Part::Suspension, None, None),
    ("suspension", Part::Suspension, None, None),
    ("shock absorber", Part::Suspension, None, None),
    ("方向盘", Part::Steering, None, None),
    ("方向机", Part::Steering, None, None),
    ("转向", Part::Steering, None, None),
    ("跑偏", Part::Steering, None, None),
    ("steering wheel", Part::Steering, None, None),
    ("steering", Part::Steering, None, None),
    ("空调", Part::AirConditioning, None, None),
    ("冷气", Part::AirConditioning, None, None),
    ("暖风", Part::AirConditioning, None, None),
    ("出风口", Part::AirConditioning, None, None),
    ("a/c", Part::AirConditioning, None, None),
    ("air conditioning", Part::AirConditioning, None, None),
    ("air con", Part::AirConditioning, None, None),
    ("ac ", Part::AirConditioning, None, None),
    ("电瓶", Part::Electrical, None, None),
    ("蓄电池", Part::Electrical, None, None),
    ("电路", Part::Electrical, None, None),
    ("车窗", Part::Electrical, None, None),
    ("电动窗", Part::Electrical, None, None),
    ("玻璃升降", Part::Electrical, None, None),
    ("雨刮器", Part::Electrical, None, None),
    ("雨刮", Part::Electrical, None, None),
    ("喇叭", Part::Electrical, None, None),
    ("中控锁", Part::Electrical, None, None),
    ("钥匙", Part::Electrical, None, None),
    ("battery", Part::Electrical, None, None),
    ("wiper", Part::Electrical, None, None),
    ("power window", Part::Electrical, None, None),
    ("horn", Part::Electrical, None, None),
    ("中控屏", Part::Infotainment, None, None),
    ("中控", Part::Infotainment, None, None),
    ("车机", Part::Infotainment, None, None),
    ("大屏", Part::Infotainment, None, None),
    ("屏幕", Part::Infotainment, None, None),
    ("导航", Part::Infotainment, None, None),
    ("音响", Part::Infotainment, None, None),
    ("音箱", Part::Infotainment, None, None),
    ("touchscreen", Part::Infotainment, None, None),
    ("touch screen", Part::Infotainment, None, None),
    ("centre console", Part::Infotainment, None, None),
    ("center console", Part::Infotainment, None, None),
    ("仪表盘", Part::Electrical, None, None),
    ("仪表", Part::Electrical, None, None),
    ("dashboard", Part::Electrical, None, None),
    ("鼓风机", Part::AirConditioning, None, None),
    ("blower", Part::AirConditioning, None, None),
    ("fan", Part::AirConditioning, None, None),
    // Bare "玻璃": the glass named before it in the message (see `analyse`).
    ("玻璃", Part::Windshield, None, None),
    ("收音机", Part::Infotainment, None, None),
    ("倒车影像", Part::Infotainment, None, None),
    ("蓝牙", Part::Infotainment, None, None),
    ("carplay", Part::Infotainment, None, None),
    ("infotainment", Part::Infotainment, None, None),
    ("screen", Part::Infotainment, None, None),
    ("radio", Part::Infotainment, None, None),
    ("bluetooth", Part::Infotainment, None, None),
    // Inside the cabin: no part of its own in the vocabulary.
    ("座椅", Part::Other, None, None),
    ("abs", Part::Brakes, None, None),
];

// (pattern, damage, "坏"-type word whose meaning depends on the part)
const DAMAGES: &[(&str, DamageType, bool)] = &[
    ("刮痕", DamageType::Scratch, false),
    ("划痕", DamageType::Scratch, false),
    ("刮花", DamageType::Scratch, false),
    ("蹭花", DamageType::Scratch, false),
    ("剐", DamageType::Scratch, false),
    ("印子", DamageType::Scratch, false),
    ("挂痕", DamageType::Scratch, false),
    ("擦了", DamageType::Scratch, false),
    ("擦到", DamageType::Scratch, false),
    ("擦伤", DamageType::Scratch, false),
    ("挂花", DamageType::Scratch, false),
    ("被挂了", DamageType::Scratch, false),
    ("蹭破", DamageType::Scratch, false),
    ("划花", DamageType::Scratch, false),
    ("刮伤", DamageType::Scratch, false),
    ("划伤", DamageType::Scratch, false),
    ("剐蹭", DamageType::Scratch, false),
    ("刮蹭", DamageType::Scratch, false),
    ("蹭了", DamageType::Scratch, false),
    ("蹭", DamageType::Scratch, false),
    ("蹭到", DamageType::Scratch, false),
    ("刮了", DamageType::Scratch, false),
    ("划了", DamageType::Scratch, false),
    ("刮到", DamageType::Scratch, false),
    ("道子", DamageType::Scratch, false),
    ("scuff", DamageType::Scratch, false),
    ("curb rash", DamageType::Scratch, false),
    // Bare verbs last (longest match wins), also catching typos like 刮横 for 刮痕.
    ("刮", DamageType::Scratch, false),
    ("划", DamageType::Scratch, false),
    ("scratch", DamageType::Scratch, false),
    ("scrach", DamageType::Scratch, false),
    ("scrape", DamageType::Scratch, false),
    ("keyed", DamageType::Scratch, false),
    ("凹陷", DamageType::Dent, false),
    ("凹痕", DamageType::Dent, false),
    ("凹进去", DamageType::Dent, false),
    ("凹了", DamageType::Dent, false),
    ("瘪了", DamageType::Dent, false),
    ("瘪", DamageType::Dent, false),
    ("撞瘪", DamageType::Dent, false),
    ("坑", DamageType::Dent, false),
    ("凹", DamageType::Dent, false),
    ("dent", DamageType::Dent, false),
    ("ding", DamageType::Dent, false),
    ("裂纹", DamageType::Crack, false),
    ("裂缝", DamageType::Crack, false),
    ("裂口", DamageType::Crack, false),
    ("split open", DamageType::Crack, false),
    ("裂痕", DamageType::Crack, false),
    ("裂了", DamageType::Crack, false),
    ("开裂", DamageType::Crack, false),
    ("裂", DamageType::Crack, false),
    ("crack", DamageType::Crack, false),
    ("掉漆", DamageType::PaintDamage, false),
    ("掉了点漆", DamageType::PaintDamage, false),
    ("掉了块漆", DamageType::PaintDamage, false),
    ("掉了一块漆", DamageType::PaintDamage, false),
    ("掉一块漆", DamageType::PaintDamage, false),
    ("掉块漆", DamageType::PaintDamage, false),
    ("掉一片漆", DamageType::PaintDamage, false),
    ("掉了一大块漆", DamageType::PaintDamage, false),
    ("掉一大块漆", DamageType::PaintDamage, false),
    ("掉了一大片漆", DamageType::PaintDamage, false),
    ("掉了一片漆", DamageType::PaintDamage, false),
    ("漆掉了", DamageType::PaintDamage, false),
    ("脱漆", DamageType::PaintDamage, false),
    ("起皮", DamageType::PaintDamage, false),
    ("起泡", DamageType::PaintDamage, false),
    ("个泡", DamageType::PaintDamage, false),
    ("腐蚀", DamageType::PaintDamage, false),
    ("掉了一小块漆", DamageType::PaintDamage, false),
    ("蹭掉一块漆", DamageType::PaintDamage, false),
    ("蹭掉了一块漆", DamageType::PaintDamage, false),
    ("刮掉一块漆", DamageType::PaintDamage, false),
    ("刮掉了一块漆", DamageType::PaintDamage, false),
    ("掉一小块漆", DamageType::PaintDamage, false),
    ("掉了一小片漆", DamageType::PaintDamage, false),
    ("bubbl", DamageType::PaintDamage, false),
    ("corrod", DamageType::PaintDamage, false),
    ("褪色", DamageType::PaintDamage, false),
    ("生锈", DamageType::PaintDamage, false),
    ("锈", DamageType::PaintDamage, false),
    ("漆面", DamageType::PaintDamage, false),
    ("chipped", DamageType::PaintDamage, false),
    ("paint chip", DamageType::PaintDamage, false),
    ("peeling", DamageType::PaintDamage, false),
    ("rust", DamageType::PaintDamage, false),
    ("faded", DamageType::PaintDamage, false),
    ("碎了", DamageType::Broken, false),
    ("变形", DamageType::Broken, false),
    ("鼓包", DamageType::Other, false),
    ("鼓了个包", DamageType::Other, false),
    ("鼓了包", DamageType::Other, false),
    ("缺口", DamageType::Broken, false),
    ("撞碎", DamageType::Broken, false),
    ("砸碎", DamageType::Broken, false),
    ("砸烂", DamageType::Broken, false),
    ("砸坏", DamageType::Broken, false),
    ("稀碎", DamageType::Broken, false),
    ("碎", DamageType::Broken, false),
    ("bent", DamageType::Broken, false),
    ("撞烂", DamageType::Broken, false),
    ("撞坏", DamageType::Broken, false),
    ("撞掉", DamageType::Broken, false),
    ("刮掉", DamageType::Broken, false),
    ("busted", DamageType::Broken, false),
    // Ambiguous: a broken panel, a dropped connection ("蓝牙…断了").
    ("断了", DamageType::Broken, true),
    ("掉了", DamageType::Broken, false),
    ("破了", DamageType::Broken, false),
    ("漆都坏", DamageType::PaintDamage, false),
    ("漆面都坏", DamageType::PaintDamage, false),
    ("漆坏", DamageType::PaintDamage, false),
    ("刮断", DamageType::Broken, false),
    ("甩咗", DamageType::Broken, false),
    ("坏了", DamageType::Broken, true),
    ("坏掉", DamageType::Broken, true),
    ("broken", DamageType::Broken, false),
    ("smashed", DamageType::Broken, false),
    ("shattered", DamageType::Broken, false),
    ("knocked off", DamageType::Broken, false),
    ("异响", DamageType::AbnormalNoise, false),
    ("摩擦声", DamageType::AbnormalNoise, false),
    ("沙沙", DamageType::AbnormalNoise, false),
    ("怪声", DamageType::AbnormalNoise, false),
    ("噪音", DamageType::AbnormalNoise, false),
    ("声音", DamageType::AbnormalNoise, false),
    ("吱吱", DamageType::AbnormalNoise, false),
    ("咯吱", DamageType::AbnormalNoise, false),
    ("嘎吱", DamageType::AbnormalNoise, false),
    ("咔咔", DamageType::AbnormalNoise, false),
    ("咔哒", DamageType::AbnormalNoise, false),
    ("哒哒", DamageType::AbnormalNoise, false),
    ("嗒嗒", DamageType::AbnormalNoise, false),
    ("咯噔", DamageType::AbnormalNoise, false),
    ("嗡嗡", DamageType::AbnormalNoise, false),
    ("呜呜", DamageType::AbnormalNoise, false),
    ("滋滋", DamageType::AbnormalNoise, false),
    ("破音", DamageType::AbnormalNoise, false),
    ("杂音", DamageType::AbnormalNoise, false),
    ("buzz", DamageType::AbnormalNoise, false),
    ("hiss", DamageType::AbnormalNoise, false),
    ("咣咣", DamageType::AbnormalNoise, false),
    ("咣", DamageType::AbnormalNoise, false),
    ("咚的", DamageType::AbnormalNoise, false),
    ("哐哐", DamageType::AbnormalNoise, false),
    ("哐当", DamageType::AbnormalNoise, false),
    ("咣当", DamageType::AbnormalNoise, false),
    ("咚咚", DamageType::AbnormalNoise, false),
    ("一声", DamageType::AbnormalNoise, false),
    ("嘎嘎", DamageType::AbnormalNoise, false),
    ("吱嘎", DamageType::AbnormalNoise, false),
    ("click", DamageType::AbnormalNoise, false),
    ("thump", DamageType::AbnormalNoise, false),
    ("whistl", DamageType::AbnormalNoise, false),
    ("响", DamageType::AbnormalNoise, false),
    ("noise", DamageType::AbnormalNoise, false),
    ("squeak", DamageType::AbnormalNoise, false),
    ("squeal", DamageType::AbnormalNoise, false),
    ("rattl", DamageType::AbnormalNoise, false),
    ("clunk", DamageType::AbnormalNoise, false),
    ("grind", DamageType::AbnormalNoise, false),
    ("knocking", DamageType::AbnormalNoise, false),
    ("creak", DamageType::AbnormalNoise, false),
    ("whin", DamageType::AbnormalNoise, false),
    ("漏水", DamageType::Leak, false),
    ("渗", DamageType::Leak, false),
    ("oil on", DamageType::Leak, false),
    ("puddle", DamageType::Leak, false),
    ("渗水", DamageType::Leak, false),
    ("进水", DamageType::Leak, false),
    ("滴水", DamageType::Leak, false),
    ("滴油", DamageType::Leak, false),
    ("撒气", DamageType::Leak, false),
    ("跑气", DamageType::Leak, false),
    ("被扎", DamageType::Leak, false),
    ("漏", DamageType::Leak, false),
    ("滴", DamageType::Leak, false),
    ("leak", DamageType::Leak, false),
    ("drip", DamageType::Leak, false),
    ("故障灯", DamageType::WarningLight, false),
    ("提示灯", DamageType::WarningLight, false),
    ("报警灯", DamageType::WarningLight, false),
    ("警告灯", DamageType::WarningLight, false),
    ("灯亮了", DamageType::WarningLight, false),
    ("亮灯", DamageType::WarningLight, false),
    ("一直亮", DamageType::WarningLight, false),
    ("亮了", DamageType::WarningLight, false),
    ("亮黄灯", DamageType::WarningLight, false),
    ("报警", DamageType::WarningLight, false),
    ("warning light", DamageType::WarningLight, false),
    ("light came on", DamageType::WarningLight, false),
    ("warning came on", DamageType::WarningLight, false),
    ("light is on", DamageType::WarningLight, false),
    ("抖动", DamageType::Vibration, false),
    ("发抖", DamageType::Vibration, false),
    ("震动", DamageType::Vibration, false),
    ("振动", DamageType::Vibration, false),
    ("震", DamageType::Vibration, false),
    ("抖", DamageType::Vibration, false),
    ("顿挫", DamageType::Vibration, false),
    ("顿一下", DamageType::Vibration, false),
    ("闯", DamageType::Vibration, false),
    ("vibrat", DamageType::Vibration, false),
    ("shak", DamageType::Vibration, false),
    ("shudder", DamageType::Vibration, false),
    ("judder", DamageType::Vibration, false),
    ("wobbl", DamageType::Vibration, false),
    ("jerk", DamageType::Vibration, false),
    ("slip", DamageType::Other, false),
    ("pulsat", DamageType::Vibration, false),
    ("不工作", DamageType::NotWorking, false),
    ("不动了", DamageType::NotWorking, false),
    ("不动", DamageType::NotWorking, false),
    ("不了了", DamageType::NotWorking, false),
    ("不响", DamageType::NotWorking, false),
    ("失效", DamageType::NotWorking, false),
    ("不亮", DamageType::NotWorking, false),
    ("不转", DamageType::NotWorking, false),
    ("不出风", DamageType::NotWorking, false),
    ("没反应", DamageType::NotWorking, false),
    ("失灵", DamageType::NotWorking, false),
    ("溜车", DamageType::NotWorking, false),
    ("就断", DamageType::NotWorking, false),
    ("不灵", DamageType::NotWorking, false),
    ("用不了", DamageType::NotWorking, false),
    ("打不开", DamageType::NotWorking, false),
    ("关不上", DamageType::NotWorking, false),
    ("升不上去", DamageType::NotWorking, false),
    ("降不下来", DamageType::NotWorking, false),
    ("没声音", DamageType::NotWorking, false),
    ("没声了", DamageType::NotWorking, false),
    ("卡死", DamageType::NotWorking, false),
    ("重启", DamageType::NotWorking, false),
    ("下不去", DamageType::NotWorking, false),
    ("影像不出来", DamageType::NotWorking, false),
    ("画面不出来", DamageType::NotWorking, false),
    ("是黑的", DamageType::NotWorking, false),
    ("不热了", DamageType::NotWorking, false),
    ("不热", DamageType::NotWorking, false),
    ("锁不上", DamageType::NotWorking, false),
    ("合不上", DamageType::NotWorking, false),
    ("摇不上", DamageType::NotWorking, false),
    ("摇不下", DamageType::NotWorking, false),
    ("收不回", DamageType::NotWorking, false),
    ("升降不了", DamageType::NotWorking, false),
    ("没声", DamageType::NotWorking, false),
    ("声音也没了", DamageType::NotWorking, false),
    ("声音没了", DamageType::NotWorking, false),
    ("won't fold", DamageType::NotWorking, false),
    ("往后溜", DamageType::NotWorking, false),
    ("往下溜", DamageType::NotWorking, false),
    ("溜坡", DamageType::NotWorking, false),
    ("goes black", DamageType::NotWorking, false),
    ("going black", DamageType::NotWorking, false),
    ("cut out", DamageType::NotWorking, false),
    ("cuts out", DamageType::NotWorking, false),
    ("won't go", DamageType::NotWorking, false),
    ("turns black", DamageType::NotWorking, false),
    ("黑了", DamageType::NotWorking, false),
    ("黑掉", DamageType::NotWorking, false),
    ("disconnect", DamageType::NotWorking, false),
    ("freez", DamageType::NotWorking, false),
    ("连不上", DamageType::NotWorking, false),
    ("doesn't latch", DamageType::NotWorking, false),
    ("won't latch", DamageType::NotWorking, false),
    ("没画面", DamageType::NotWorking, false),
    ("没有画面", DamageType::NotWorking, false),
    ("不显示", DamageType::NotWorking, false),
    ("no sound", DamageType::NotWorking, false),
    ("no picture", DamageType::NotWorking, false),
    ("放不下", DamageType::NotWorking, false),
    ("松不开", DamageType::NotWorking, false),
    ("下不来", DamageType::NotWorking, false),
    ("dying", DamageType::NotWorking, false),
    ("drains", DamageType::NotWorking, false),
    ("draining", DamageType::NotWorking, false),
    ("not working", DamageType::NotWorking, false),
    ("doesn't work", DamageType::NotWorking, false),
    ("does not work", DamageType::NotWorking, false),
    ("stopped working", DamageType::NotWorking, false),
    ("won't", DamageType::NotWorking, false),
    ("dead", DamageType::NotWorking, false),
    ("is out", DamageType::NotWorking, false),
    ("跑偏", DamageType::Other, false),
    ("磨平", DamageType::Other, false),
    ("臭味", DamageType::Other, false),
    ("糊味", DamageType::Other, false),
    ("焦糊", DamageType::Other, false),
    ("没劲", DamageType::Other, false),
    ("没力", DamageType::Other, false),
    ("动力不足", DamageType::Other, false),
    ("打不动", DamageType::Other, false),
    ("方向盘沉", DamageType::Other, false),
    ("特别沉", DamageType::Other, false),
    ("很沉", DamageType::Other, false),
    ("有点沉", DamageType::Other, false),
    ("发沉", DamageType::Other, false),
    ("变沉", DamageType::Other, false),
    ("磨损", DamageType::Other, false),
    ("不准", DamageType::Other, false),
    ("有点软", DamageType::Other, false),
    ("发软", DamageType::Other, false),
    ("很软", DamageType::Other, false),
    ("heavy", DamageType::Other, false),
    ("foggy", DamageType::Other, false),
    ("lack of power", DamageType::Other, false),
    ("sluggish", DamageType::Other, false),
    ("焦味", DamageType::Other, false),
    ("霉味", DamageType::Other, false),
    ("烧焦", DamageType::Other, false),
    ("味道", DamageType::Other, false),
    ("smell", DamageType::Other, false),
    ("pulls to", DamageType::Other, false),
];

/// Words that contain side or symptom characters but mean neither.
const MASK: &[&str] = &[
    "以前",
    "说不准",
    "拿不准",
    "之前",
    "前几天",
    "前天",
    "前两天",
    "前段时间",
    "前阵子",
    "后来",
    "之后",
    "以后",
    "影响",
    "前面说",
    "然后",
    "响应",
    "最后",
    "声音不大",
    "门口",
    "back then",
    "油门",
    "门槛",
    // Negated paint damage: a fact about the primer, not a finding.
    "漆面没破",
    "漆没破",
    "漆倒是没破",
    "漆倒是没掉",
    // Weather and roads, not damage: 刮风 is wind, a 水坑 is a puddle.
    "没漏",
    // The noise stops: not a device that fell silent.
    "就没声了",
    // Directions of travel, not sides ("手一松方向盘就往左边走").
    "往左边",
    "往右边",
    "向左",
    "向右",
    "刮大风",
    // A wiper's stroke.
    "一刮",
    "说一声",
    "不动的时候",
    "停着不动",
    // "转弯的时候更响": the same noise, louder.
    "更响",
    "越响",
    // Turning the wheel one way is not a side of the steering.
    "往左打",
    "往右打",
    "向左打",
    "向右打",
    "刮起来",
    "油印",
    "自动挡",
    "手动挡",
    "刮风",
    "水坑",
    "漆面没事",
    "漆面没问题",
    "没掉漆",
    "漆没掉",
    "没伤到漆",
    "没伤到底漆",
    "没破漆",
    // "用钥匙划的" is a scratch, not the key.
    "用钥匙",
    "拿钥匙",
    "isn't broken",
    "not broken",
    // Vehicles that hit ours, and "顶" as a verb ("被后面的车顶了").
    "电瓶车",
    "车顶了",
];

const SINCE: &[&str] = &[
    "昨天",
    "前天",
    "今天",
    "今早",
    "早上",
    "上周",
    "上个星期",
    "上星期",
    "上个月",
    "这几天",
    "前几天",
    "前两天",
    "最近",
    "刚才",
    "刚刚",
    "一周",
    "一个星期",
    "一个月",
    "几天",
    "yesterday",
    "today",
    "this morning",
    "last week",
    "last month",
    "a few days",
    "recently",
    "since",
];

/// Two-character homophone typos common enough to list: the homophone pass repairs only
/// longer words (see `homophone.rs`).
const TYPOS: &[(&str, &str)] = &[
    ("杀车", "刹车"),
    ("花痕", "划痕"),
    ("列纹", "裂纹"),
    ("画痕", "划痕"),
    ("轮鼓", "轮毂"),
    ("副架", "副驾"),
    ("异想", "异响"),
    ("化痕", "划痕"),
    ("轮古", "轮毂"),
    ("轮骨", "轮毂"),
    ("主架", "主驾"),
    ("斗得", "抖得"),
    ("雨挂", "雨刮"),
];

/// The lexicon's own Chinese words, for repairing homophone typos before matching.
fn homophones() -> &'static Homophones {
    static H: OnceLock<Homophones> = OnceLock::new();
    H.get_or_init(|| {
        let words = PARTS.iter().map(|x| x.0).chain(DAMAGES.iter().map(|x| x.0)).chain(COMPOUNDS.iter().map(|x| x.0));
        Homophones::new(words.chain(SITUATIONS.iter().map(|x| x.0)))
    })
}

/// Lower-case, full-width ASCII to half-width, unify punctuation.
pub fn normalize(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            '’' | '‘' => '\'',
            _ => c,
        })
        .flat_map(|c| c.to_lowercase())
        .collect()
}

fn is_sep(c: char) -> bool {
    matches!(c, ',' | '.' | ';' | '!' | '?' | '，' | '。' | '；' | '！' | '？' | '、' | '\n' | '~' | '…')
}

/// Splits at punctuation and at "还有/另外/而且/also" which start a new problem.
fn clauses(norm: &str) -> Vec<String> {
    let mut marked = pauses(norm);
    for w in ["还有", "另外", "而且", "并且", "同时", " also ", " and also "] {
        marked = marked.replace(w, &format!("|{w}"));
    }
    marked.split(|c: char| is_sep(c) || c == '|').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

/// Voice input has no punctuation: a space between two longer runs of Chinese is a pause, marked
/// '|'. Short pieces ("左后", "嗯", "右边") stay with their neighbours, and so does a guess at the
/// cause ("…咯吱咯吱 像是减震的问题").
fn pauses(norm: &str) -> String {
    let han = |c: char| ('\u{4E00}'..='\u{9FFF}').contains(&c);
    let pieces: Vec<&str> = norm.split(' ').collect();
    let mut out = String::with_capacity(norm.len());
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            let prev_han = pieces[i - 1].chars().next_back().is_some_and(han);
            let next_han = piece.chars().next().is_some_and(han);
            let guess = ["像是", "好像是", "可能是", "感觉是", "估计是", "应该是", "听着像"].iter().any(|w| piece.starts_with(w));
            let long = |p: &str| p.chars().count() >= 5;
            if prev_han && next_han && !guess && long(pieces[i - 1]) && long(piece) {
                out.push('|');
            } else {
                out.push(' ');
            }
        }
        out.push_str(piece);
    }
    out
}

struct Hit<T> {
    start: usize,
    end: usize,
    val: T,
}

/// All non-overlapping matches of `table` in `s` avoiding `used`, longest first; marks `used`.
fn find<T: Copy>(s: &str, table: &[(&str, T)], used: &mut [bool]) -> Vec<Hit<T>> {
    let mut cands: Vec<Hit<T>> = Vec::new();
    for (pat, val) in table {
        if pat.is_empty() {
            continue;
        }
        for (i, _) in s.match_indices(pat) {
            cands.push(Hit { start: i, end: i + pat.len(), val: *val });
        }
    }
    cands.sort_by(|a, b| (b.end - b.start).cmp(&(a.end - a.start)).then(a.start.cmp(&b.start)));
    let mut out = Vec::new();
    for h in cands {
        if used[h.start..h.end].iter().any(|u| *u) {
            continue;
        }
        // English words: require a word boundary in front ("door" not in "outdoor").
        if h.start > 0 && s.as_bytes()[h.start].is_ascii_alphabetic() && s.as_bytes()[h.start - 1].is_ascii_alphabetic() {
            continue;
        }
        used[h.start..h.end].iter_mut().for_each(|u| *u = true);
        out.push(h);
    }
    out.sort_by_key(|h| h.start);
    out
}

fn mask(s: &str, words: &[&str], used: &mut [bool]) {
    for w in words {
        for (i, _) in s.match_indices(w) {
            used[i..i + w.len()].iter_mut().for_each(|u| *u = true);
        }
    }
}

/// Side words in `s[from..to]` not already used, the last one of each axis winning.
fn sides_in(s: &str, from: usize, to: usize, used: &[bool]) -> (Option<Lat>, Option<Lon>) {
    let (mut lat, mut lon) = (None, None);
    let seg = &s[from..to];
    let table: &[(&str, Option<Lat>, Option<Lon>)] = &[
        ("左", Some(Lat::L), None),
        ("右", Some(Lat::R), None),
        ("主驾", Some(Lat::L), Some(Lon::F)),
        ("驾驶", Some(Lat::L), Some(Lon::F)),
        ("副驾", Some(Lat::R), Some(Lon::F)),
        ("司机", Some(Lat::L), Some(Lon::F)),
        ("乘客", Some(Lat::R), Some(Lon::F)),
        ("前", None, Some(Lon::F)),
        ("后", None, Some(Lon::B)),
        ("left", Some(Lat::L), None),
        ("right", Some(Lat::R), None),
        ("driver", Some(Lat::L), Some(Lon::F)),
        ("passenger", Some(Lat::R), Some(Lon::F)),
        ("front", None, Some(Lon::F)),
        ("rear", None, Some(Lon::B)),
        ("back", None, Some(Lon::B)),
    ];
    let mut hits: Vec<(usize, Option<Lat>, Option<Lon>)> = Vec::new();
    for (w, la, lo) in table {
        for (i, _) in seg.match_indices(w) {
            let gi = from + i;
            if used[gi..gi + w.len()].iter().any(|u| *u) {
                continue;
            }
            hits.push((gi, *la, *lo));
        }
    }
    hits.sort_by_key(|h| h.0);
    // "副驾驶" holds both 副驾 and 驾驶: the 驾驶 inside it is not the driver's side.
    let fu: Vec<usize> =
        hits.iter().filter(|h| seg.get(h.0 - from..).map(|t| t.starts_with("副驾")).unwrap_or(false)).map(|h| h.0).collect();
    hits.retain(|h| !fu.iter().any(|f| h.0 == f + "副".len() && seg.get(h.0 - from..).map(|t| t.starts_with("驾驶")).unwrap_or(false)));
    for (_, la, lo) in hits {
        if la.is_some() {
            lat = la;
        }
        if lo.is_some() {
            lon = lo;
        }
    }
    (lat, lon)
}

fn compose(lat: Option<Lat>, lon: Option<Lon>) -> Option<Position> {
    match (lat, lon) {
        (Some(Lat::L), Some(Lon::F)) => Some(Position::LeftFront),
        (Some(Lat::R), Some(Lon::F)) => Some(Position::RightFront),
        (Some(Lat::L), Some(Lon::B)) => Some(Position::LeftRear),
        (Some(Lat::R), Some(Lon::B)) => Some(Position::RightRear),
        (Some(Lat::L), None) => Some(Position::Left),
        (Some(Lat::R), None) => Some(Position::Right),
        (None, Some(Lon::F)) => Some(Position::Front),
        (None, Some(Lon::B)) => Some(Position::Rear),
        (None, None) => None,
    }
}

/// Parts whose position is intrinsic: a "前"/"后" near them is part of the name, not a side.
fn side_free(p: Part) -> bool {
    matches!(
        p,
        Part::Hood
            | Part::TrunkLid
            | Part::Roof
            | Part::Windshield
            | Part::RearWindshield
            | Part::Engine
            | Part::Transmission
            | Part::AirConditioning
            | Part::Infotainment
            | Part::Steering
    )
}

/// The parts a text names, in order, without damage words or sides: a workshop line of a DMS
/// export ("右前门钣金喷漆" → door, "更换前保险杠" → bumper). Longest word first, as in `analyse`.
pub fn parts_named(text: &str) -> Vec<Part> {
    let norm = normalize(text);
    let table: Vec<(&str, Part)> = PARTS.iter().map(|(w, p, _, _)| (*w, *p)).collect();
    let mut used = vec![false; norm.len()];
    let mut out = Vec::new();
    for h in find(&norm, &table, &mut used) {
        if h.val != Part::Other && !out.contains(&h.val) {
            out.push(h.val);
        }
    }
    out
}

pub fn analyse(text: &str) -> LexResult {
    let norm = homophones().repair(&TYPOS.iter().fold(normalize(text), |t, (typo, word)| t.replace(typo, word)));
    // "刮掉一块漆": the scrape and the paint it took off are one act (see the end).
    let scraped_off = paint_off().captures_iter(&norm).any(|c| c.get(1).is_some());
    let norm = paint_off().replace_all(&norm, "掉漆").into_owned();
    // A wiper's stroke is not a scratch ("雨刮器刮的时候咯吱响").
    let norm = norm.replace("雨刮器刮", "雨刮器摆").replace("雨刮刮", "雨刮摆");
    let norm = corrected(&norm);
    let norm = plain_names().iter().fold(norm, |t, (re, word)| re.replace_all(&t, *word).into_owned());
    let mut res = LexResult { findings: Vec::new(), loose: LooseFacts::default(), unsure: false, has_problem_words: false };
    res.loose = loose_facts(&norm);
    let mut prev: Option<(Part, Option<Position>)> = None;
    let mut orphan: Option<(Part, Option<Position>)> = None;
    let mut situation_part: Option<Part> = None;
    // The glass a bare "玻璃" refers to ("前挡风玻璃…，玻璃裂成蜘蛛网了").
    let mut last_glass: Option<Part> = None;
    // The message denies a damage somewhere ("没划痕也没凹"): a part named alone is then no problem.
    let mut denied = false;
    // Parts said to be fine ("前门是好的").
    let mut fine: Vec<(Part, Option<Position>)> = Vec::new();
    // A clause said the primer of its own finding: the message's word is not everyone's.
    let mut primer_placed = false;
    let mut last_here: Vec<(Part, Option<Position>, DamageType)> = Vec::new();
    // The situation of the last clause that had findings, and one said in a clause without any.
    let mut last_when: Option<String> = None;
    let mut pending_when: Option<String> = None;

    let parts_tbl: Vec<(&str, (Part, Option<Lon>, Option<Lat>))> = PARTS.iter().map(|(w, p, lo, la)| (*w, (*p, *lo, *la))).collect();
    let dmg_tbl: Vec<(&str, (DamageType, bool))> = DAMAGES.iter().map(|(w, d, a)| (*w, (*d, *a))).collect();
    let comp_tbl: Vec<(&str, (Part, DamageType))> = COMPOUNDS.iter().map(|(w, p, d, _)| (*w, (*p, *d))).collect();

    for cl in clauses(&norm) {
        let s = cl.as_str();
        let mut used = vec![false; s.len()];
        mask(s, MASK, &mut used);
        // "咔咔的响，直着开不响": the noise stops, nothing fell silent.
        if norm.contains("不响") && DAMAGES.iter().any(|(w, d, _)| *d == DamageType::AbnormalNoise && *w != "响" && norm.contains(w)) {
            mask(s, &["不响"], &mut used);
        }
        // "五十公分左右": about, not both sides.
        for (i, _) in s.match_indices("左右") {
            if s[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || "一二三四五六七八九十百千两分米度寸天钟块元个码".contains(c))
            {
                used[i..i + "左右".len()].iter_mut().for_each(|u| *u = true);
            }
        }
        // "上次的异响已经修好了": a problem that is gone.
        if FIXED.iter().any(|w| s.contains(w)) {
            continue;
        }
        if res.findings.last().is_some_and(|f| f.damage_type == DamageType::Dent) || DENT_WORDS.iter().any(|w| s.contains(w)) {
            mask(s, PAINT_ON_DENT, &mut used);
        }
        // Parts whose names start with a situation ("倒车影像", "倒车镜") before the situations.
        let early_tbl: Vec<(&str, (Part, Option<Lon>, Option<Lat>))> =
            parts_tbl.iter().filter(|(w, _)| w.starts_with("倒车")).cloned().collect();
        let early = find(s, &early_tbl, &mut used);
        // "冷车启动困难": a hard start before the situation "冷车启动" takes its words.
        let early_comp_tbl: Vec<(&str, (Part, DamageType))> =
            comp_tbl.iter().filter(|(w, _)| w.contains("启动") || w.contains("打火")).cloned().collect();
        let early_comps = find(s, &early_comp_tbl, &mut used);
        let marker = TIME_MARKERS.iter().any(|m| s.contains(m));
        let sit_tbl: Vec<(&str, Option<Part>)> =
            SITUATIONS.iter().filter(|(_, _, _, need)| !need || marker).map(|(w, _, p, _)| (*w, *p)).collect();
        let sits = find(s, &sit_tbl, &mut used);
        // "怠速开着空调车抖": the air conditioning and high speed only load what shakes.
        if let Some(p) = sits.iter().filter_map(|h| h.val).min_by_key(|p| matches!(p, Part::AirConditioning | Part::Tire)) {
            situation_part = Some(p);
        }
        // A wheel's noise while braking is the brakes; over bumps, the suspension.
        let wheel_noise_part = sits.iter().find_map(|h| h.val.filter(|p| matches!(p, Part::Brakes | Part::Suspension)));
        let mut comps = find(s, &comp_tbl, &mut used);
        comps.extend(early_comps);
        comps.sort_by_key(|h| h.start);
        let mut parts = find(s, &parts_tbl, &mut used);
        // "音响左前喇叭有破音": a speaker, not the horn.
        let audio = ["音响", "音箱", "音量", "音乐", "破音", "speaker"].iter().any(|w| s.contains(w));
        parts.extend(early);
        parts.sort_by_key(|h| h.start);
        // "车头引擎盖": a locator next to a named part only says where that part is.
        // "左后叶子板靠近尾灯的地方", "天窗旁边的漆面": a part named to say where another one is.
        let near = |h: &Hit<(Part, Option<Lon>, Option<Lat>)>| {
            ["靠近", "挨着", "near the ", "next to the "].iter().any(|w| s[..h.start].ends_with(w))
                || ["旁边", "附近"].iter().any(|w| s[h.end..].starts_with(w))
        };
        let is_locator = |h: &Hit<(Part, Option<Lon>, Option<Lat>)>| LOCATORS.contains(&&s[h.start..h.end]) || near(h);
        // "车屁股保险杠": the end of the car the locator names.
        let ends: Vec<(usize, Lon)> = parts.iter().filter(|h| is_locator(h)).filter_map(|h| h.val.1.map(|lo| (h.end, lo))).collect();
        if parts.iter().any(|h| !is_locator(h)) {
            // Their side words then belong to the part named ("右后轮钢圈" → right rear rim).
            for h in parts.iter().filter(|h| is_locator(h)) {
                used[h.start..h.end].iter_mut().for_each(|u| *u = false);
            }
            parts.retain(|h| !is_locator(h));
        }
        let dmgs = find(s, &dmg_tbl, &mut used);
        // "他的后杠裂了，我的车没事": someone else's car; "被别人的车门磕了": what hit ours.
        let foreign = |h: &Hit<(Part, Option<Lon>, Option<Lat>)>| FOREIGN.iter().any(|w| s[..h.start].ends_with(w));
        if parts.iter().any(foreign) {
            parts.retain(|h| !foreign(h));
            if parts.is_empty() {
                continue;
            }
        }
        // "一加速车头那里就呜呜叫": an end of the car only places a noise.
        if !dmgs.is_empty() && comps.is_empty() && dmgs.iter().all(|d| !is_body_damage(d.val.0)) {
            parts.retain(|h| !["车头", "车尾", "车屁股"].contains(&&s[h.start..h.end]));
        }
        // "漆面有一道划痕": a weak word gives way to a plain damage word in the same clause.
        let dmgs = if dmgs.len() > 1 { dmgs.into_iter().filter(|h| !WEAK.contains(&&s[h.start..h.end])).collect() } else { dmgs };
        // "没划痕也没凹", "玻璃没碎", "故障灯倒是没亮", "no leaks": what is not wrong.
        let (comps, dmgs) = {
            let n = comps.len() + dmgs.len();
            let comps: Vec<_> = comps.into_iter().filter(|h| !negated(s, h.start, h.end)).collect();
            let dmgs: Vec<_> = dmgs.into_iter().filter(|h| !negated(s, h.start, h.end)).collect();
            denied |= comps.len() + dmgs.len() < n;
            (comps, dmgs)
        };
        if !comps.is_empty() || !dmgs.is_empty() {
            res.has_problem_words = true;
        }
        let fine_here =
            comps.is_empty() && dmgs.is_empty() && ["是好的", "没事", "没问题", "is fine", "is ok"].iter().any(|w| s.contains(w));

        // Each part mention with its side (words between the previous part and this one).
        let mut mentions: Vec<(usize, Part, Option<Position>)> = Vec::new();
        let mut from = 0;
        // "同一侧前轮的轮毂也刮花了".
        let same_side = ["同一侧", "同侧", "同一边", "same side"].iter().any(|w| s.contains(w));
        for h in &parts {
            let (p, ilon, ilat) = h.val;
            let p = if &s[h.start..h.end] == "玻璃" {
                match last_glass {
                    Some(g) => g,
                    None => continue,
                }
            } else {
                p
            };
            if matches!(p, Part::Windshield | Part::RearWindshield) {
                last_glass = Some(p);
            }
            let (mut lat, mut lon) = sides_in(s, from, h.start, &used);
            if lon.is_none() {
                lon = ends.iter().find(|(e, _)| *e > from && *e <= h.start).map(|(_, lo)| *lo);
            }
            if lat.is_none() && lon.is_none() {
                // "the taillight on the left", "后视镜右边的": side words after the part, up to the next part.
                let next = parts.iter().find(|x| x.start > h.start).map(|x| x.start).unwrap_or(s.len());
                let (la, lo) = sides_in(s, h.end, next, &used);
                lat = la;
                lon = lo;
            }
            let lat = ilat.or(lat);
            let lon = ilon.or(if side_free(p) { None } else { lon });
            let lat = if side_free(p) && p != Part::Steering { lat.filter(|_| false) } else { lat };
            // Conventions: a bumper is front or rear, a mirror left or right, a rear fender is the
            // quarter panel.
            let (lat, lon) = match p {
                Part::Bumper => (None, lon),
                Part::Mirror | Part::Taillight => (lat, None),
                // "左前大灯" keeps its front, "副驾这边的大灯" is the right one.
                Part::Headlight => {
                    (lat, lon.filter(|_| ilon.is_some() || s[..h.start].ends_with("左前") || s[..h.start].ends_with("右前")))
                }
                // A fender is a front wing, a quarter panel a rear one ("右边叶子板").
                Part::Fender if lat.is_some() && lon.is_none() => (lat, Some(Lon::F)),
                Part::QuarterPanel if lat.is_some() && lon.is_none() => (lat, Some(Lon::B)),
                _ => (lat, lon),
            };
            let p = if p == Part::Fender && lon == Some(Lon::B) { Part::QuarterPanel } else { p };
            // "副驾门磕到柱子上，门边掉了一块漆": the same part again, without its side.
            // "左前轮毂和轮胎都刮伤了": the side of the rim named just before.
            let before = mentions.last().map(|m| (m.1, m.2));
            let pos =
                compose(lat, lon).or_else(|| [before, orphan, prev].into_iter().flatten().find(|x| same_place(x.0, p)).and_then(|x| x.1));
            // "副驾门被撞凹了，车窗也降不下来了": 也 puts it at the same place.
            let pos = match prev {
                Some((_, Some(ppos))) if pos.is_none() && s.contains('也') && corners(p) => {
                    Some(ppos).filter(|x| split(Some(*x)).1.is_some())
                }
                _ => pos,
            };
            // "副驾门和后面那个门": the side of the same part named just before.
            let pos = match (split(pos), before) {
                ((None, Some(lo)), Some((bp, Some(bpos)))) if corners(p) && same_kind(p, bp) && split(Some(bpos)).0.is_some() => {
                    compose(split(Some(bpos)).0, Some(lo))
                }
                _ => pos,
            };
            // "左前门划了，后门也凹了": the side of the message's previous finding, on a panel of
            // the same kind (a door's side is not the suspension's).
            let pos = match (split(pos), prev) {
                ((None, Some(lo)), Some((pp, Some(ppos))))
                    if !side_free(p) && !matches!(p, Part::Bumper) && !side_free(pp) && (same_kind(p, pp) || same_side) =>
                {
                    compose(split(Some(ppos)).0, Some(lo))
                }
                _ => pos,
            };
            let p = if audio && &s[h.start..h.end] == "喇叭" { Part::Infotainment } else { p };
            mentions.push((h.start, p, pos));
            from = h.end;
        }
        if fine_here {
            fine.extend(mentions.iter().map(|m| (m.1, m.2)));
            continue;
        }
        // "右边两个门" / "前后门" / "四个门": expand doors.
        let two_doors = pair_of_doors().is_match(s)
            || ["前后门", "前后车门", "both doors", "front and rear door", "front and back door"].iter().any(|w| s.contains(w));
        let four_doors = ["四个门", "所有门", "四个车门", "all doors", "all four doors"].iter().any(|w| s.contains(w));
        // "两侧后视镜", "左右两边前翼子板": the part on both sides (not bare 左右: "30公分左右").
        let both_sides = ["两侧", "两边", "左右两", "左边右边", "左右都", "both sides", "both mirrors"].iter().any(|w| s.contains(w));
        let both_sides = both_sides || pair_of_lamps().is_match(s);
        let front_and_back = s.contains("前后");
        let two_wheels = front_and_back || ["两个", "两只", "俩", "both"].iter().any(|w| s.contains(w));
        let mut expanded = Vec::new();
        for (i, p, pos) in mentions {
            if p == Part::Door && four_doors {
                for q in [Position::LeftFront, Position::RightFront, Position::LeftRear, Position::RightRear] {
                    expanded.push((i, p, Some(q)));
                }
            } else if p == Part::Door && two_doors {
                // A side named ("乘客侧两个门", "左边前后门") means its front and rear door;
                // otherwise "两个前门" / "两个后门" are the pair across.
                let (a, b) = match split(pos) {
                    (Some(Lat::R), _) => (Position::RightFront, Position::RightRear),
                    (Some(Lat::L), _) | (None, None) => (Position::LeftFront, Position::LeftRear),
                    (None, Some(Lon::F)) => (Position::LeftFront, Position::RightFront),
                    (None, Some(Lon::B)) => (Position::LeftRear, Position::RightRear),
                };
                expanded.push((i, p, Some(a)));
                expanded.push((i, p, Some(b)));
            } else if front_and_back && matches!(p, Part::Fender | Part::QuarterPanel) && split(pos).0.is_some() {
                // "右边前后叶子板": the front wing and the rear one.
                let lat = split(pos).0;
                expanded.push((i, Part::Fender, compose(lat, Some(Lon::F))));
                expanded.push((i, Part::QuarterPanel, compose(lat, Some(Lon::B))));
            } else if both_sides && p != Part::Door && p != Part::Bumper && !side_free(p) {
                let lon = split(pos).1;
                expanded.push((i, p, compose(Some(Lat::L), lon)));
                expanded.push((i, p, compose(Some(Lat::R), lon)));
            } else if two_wheels && matches!(p, Part::WheelRim | Part::Tire) && pos.is_some() {
                // "右边两个轮毂": the front and rear wheel of that side; "both front wheels": across.
                let (a, b) = match split(pos) {
                    (Some(la), lo) if lo.is_none() || front_and_back => (compose(Some(la), Some(Lon::F)), compose(Some(la), Some(Lon::B))),
                    (None, Some(lo)) => (compose(Some(Lat::L), Some(lo)), compose(Some(Lat::R), Some(lo))),
                    _ => (pos, pos),
                };
                expanded.push((i, p, a));
                expanded.push((i, p, b));
            } else {
                expanded.push((i, p, pos));
            }
        }
        // Deduplicate same part+position within a clause ("门…车门").
        let mut mentions: Vec<(usize, Part, Option<Position>)> = Vec::new();
        for m in expanded {
            if !mentions.iter().any(|x| x.1 == m.1 && x.2 == m.2) {
                mentions.push(m);
            }
        }
        // The same part once with a side and once without is one part ("左后轮…胎").
        let sided: Vec<Part> = mentions.iter().filter(|m| m.2.is_some()).map(|m| m.1).collect();
        mentions.retain(|m| m.2.is_some() || !sided.contains(&m.1));

        let mut new: Vec<Finding> = Vec::new();
        for c in &comps {
            let (mut p, d) = c.val;
            // "变速箱那块在漏油": the part named wins over the oil leak's default engine.
            if d == DamageType::Leak && p == Part::Engine {
                if let Some(m) = mentions
                    .iter()
                    .find(|m| matches!(m.1, Part::Transmission | Part::Brakes | Part::Steering | Part::Suspension | Part::AirConditioning))
                {
                    p = m.1;
                }
            }
            // The side of the same part in this clause, else in the previous one ("左前轮胎…，一直漏气").
            let pos = mentions
                .iter()
                .find(|m| m.1 == p)
                .and_then(|m| m.2)
                .or_else(|| prev.filter(|x| x.0 == p).and_then(|x| x.1))
                .or_else(|| orphan.filter(|x| x.0 == p).and_then(|x| x.1));
            // A car that will not start is the engine, unless the customer blames the battery.
            if p == Part::Engine && d == DamageType::NotWorking && battery_blamed(&norm) {
                p = Part::Electrical;
            }
            // A warning light is on the dashboard; only tyre pressure names a wheel.
            let pos = pos.filter(|_| d != DamageType::WarningLight || p == Part::Tire);
            new.push(Finding::new(p, pos, d));
        }
        let comp_parts: Vec<Part> = new.iter().map(|f| f.part).collect();
        // "check engine light is on": the compound already said it; "light is on" adds nothing.
        let comp_dmgs: Vec<DamageType> = comps.iter().map(|c| c.val.1).collect();
        let dmgs: Vec<Hit<(DamageType, bool)>> = dmgs.into_iter().filter(|d| !comp_dmgs.contains(&d.val.0)).collect();
        // "停车场被人刮了，左前门和左后门都有": the previous clause's partless symptom belongs here.
        if dmgs.is_empty() && comps.is_empty() && !mentions.is_empty() && res.findings.iter().any(|f| f.part == Part::Other) {
            let others: Vec<Finding> = res.findings.iter().filter(|f| f.part == Part::Other).cloned().collect();
            res.findings.retain(|f| f.part != Part::Other);
            for o in others {
                for (_, p, pos) in &mentions {
                    push_unique(&mut new, fit_to_part(Finding::new(wheel_part(*p, o.damage_type, None), *pos, o.damage_type), false));
                }
            }
            orphan = None;
        }
        let mut mentions: Vec<_> = mentions.into_iter().filter(|m| !comp_parts.contains(&m.1)).collect();
        // "机盖、前杠都有划痕": the part named alone just before shares this clause's damage.
        if let Some(o) = orphan {
            let all_of = s.contains('都') || s.contains("both");
            if all_of && dmgs.len() == 1 && !mentions.is_empty() && !mentions.iter().any(|m| m.1 == o.0 && m.2 == o.1) {
                mentions.insert(0, (0, o.0, o.1));
            }
        }
        // "右后门被蹭了一长条，右后叶子板也带到了一点": the same damage on one more part.
        if dmgs.is_empty() && comps.is_empty() && s.contains('也') {
            if let Some(last) = res.findings.last().filter(|f| f.part != Part::Other && is_body_damage(f.damage_type)) {
                let d = last.damage_type;
                for (_, p, pos) in mentions.iter().filter(|m| !side_free(m.1) || matches!(m.1, Part::Hood | Part::TrunkLid | Part::Roof)) {
                    push_unique(&mut new, Finding::new(*p, *pos, d));
                }
            }
        }

        if !dmgs.is_empty() {
            if mentions.is_empty() {
                // A symptom without a part: the situation's part, else a part named alone in the
                // previous clause, else the previous finding's part ("右前门有刮痕，还有异响").
                // Body damage happens to a body part, whatever the situation ("跑高速的时候…裂了").
                let body = dmgs.iter().all(|d| is_body_damage(d.val.0));
                let (part, pos) = if let Some(f) = new.last() {
                    // "胎压监测提示右后轮胎压低，打了气又瘪了": this clause's compound named it.
                    (f.part, f.position)
                } else if dmgs.iter().all(|d| POWERLESS.contains(&&s[d.start..d.end])) {
                    // "发动机故障灯亮，加速没劲": a car short of power has no part of its own (LABELING.md).
                    (Part::Other, None)
                } else if let Some(p) = situation_part.filter(|p| !body || (orphan.is_none() && prev.is_none() && panel(*p))) {
                    let pos = prev.filter(|x| x.0 == p).and_then(|x| x.1).or_else(|| orphan.filter(|x| x.0 == p).and_then(|x| x.1));
                    // "过减速带的时候后面咯噔一声": where the symptom comes from.
                    let pos = pos.or_else(|| {
                        let (la, lo) = sides_in(s, 0, s.len(), &used);
                        compose(la, lo).filter(|_| !side_free(p) || p == Part::Steering)
                    });
                    (p, pos)
                } else if let Some(o) = orphan {
                    o
                } else if let Some(pv) = prev {
                    pv
                } else {
                    (Part::Other, None)
                };
                for d in &dmgs {
                    push_unique(&mut new, fit_to_part(Finding::new(part, pos, d.val.0), d.val.1));
                }
            } else if dmgs.len() == 1 {
                // One symptom word shared by every part named ("左前门和左后门都有划痕"); a lamp's
                // word only by the lamps ("按喇叭提醒我刹车灯不亮了").
                let lamp_word = ["不亮", "not light", "is out"].iter().any(|w| s[dmgs[0].start..].starts_with(w));
                let lamps = lamp_word && mentions.iter().any(|m| matches!(m.1, Part::Headlight | Part::Taillight));
                for (i, p, pos) in mentions.iter().filter(|m| !lamps || matches!(m.1, Part::Headlight | Part::Taillight)) {
                    let d = dmgs[0].val.0;
                    let p = on_dashboard(s, *i, wheel_part(*p, d, wheel_noise_part.or(named_tyre(s, *i))), d);
                    push_unique(&mut new, fit_to_part(Finding::new(p, *pos, d), dmgs[0].val.1));
                }
            } else {
                // Several symptoms: each goes to the nearest part named before it (or the first part).
                for d in &dmgs {
                    // "a crack in the rear windshield": an English damage word points forward.
                    let forward = [" on ", " in ", " to ", " along ", " at ", " the ", " my "].iter().any(|w| s[d.end..].starts_with(w));
                    let ahead = parts
                        .iter()
                        .find(|h| forward && h.start > d.end && h.start <= d.end + 12)
                        .and_then(|h| mentions.iter().find(|m| m.1 == h.val.0 || m.0 == h.start));
                    let m = ahead.or_else(|| mentions.iter().rev().find(|m| m.0 < d.start)).or(mentions.first());
                    if let Some(&(at, _, _)) = m {
                        // Expanded pairs share their mention's offset ("左边两个门…划到底了").
                        for (i, p, pos) in mentions.iter().filter(|x| x.0 == at) {
                            let dt = d.val.0;
                            let p = on_dashboard(s, *i, wheel_part(*p, dt, wheel_noise_part), dt);
                            push_unique(&mut new, fit_to_part(Finding::new(p, *pos, dt), d.val.1));
                        }
                    }
                }
            }
            orphan = None;
        } else if new.is_empty() {
            let unplaced = mentions.first().and_then(|m| {
                let pos = m.2?;
                // "底盘有咔咔的响声，听着是从左前轮传过来的": the wheel places what is behind it.
                let behind = |f: &Finding| m.1 == Part::Tire && matches!(f.part, Part::Suspension | Part::Brakes);
                res.findings.iter_mut().find(|f| (f.part == m.1 || behind(f)) && f.position.is_none()).map(|f| (f, pos))
            });
            if let Some((f, pos)) = unplaced {
                // "胎压灯亮了，显示右后轮胎压低": the side of an earlier finding.
                f.position = Some(pos);
            } else if let Some(m) = mentions.first() {
                // A part named alone: its symptom may follow in the next clause ("右后叶子板 就是
                // 后面那个翼子板": the same part again, less precisely, keeps its side).
                let keep = orphan.is_some_and(|o| o.0 == m.1 && refines(o.1, m.2));
                if !keep {
                    orphan = Some((m.1, m.2));
                }
            } else {
                let (lat, lon) = sides_in(s, 0, s.len(), &used);
                if let Some(pos) = compose(lat, lon) {
                    if let Some(o) = orphan.as_mut() {
                        if o.1.is_none() && !side_free(o.0) {
                            o.1 = Some(pos);
                        }
                    }
                    // "…，右边的": the side of the previous clause's findings.
                    let mut applied = false;
                    for f in res.findings.iter_mut().filter(|f| !side_free(f.part)) {
                        // "后面咚咚响 然后就是左后那边": a side that adds to the one said.
                        let ((la, lo), (fa, fo)) = (split(Some(pos)), split(f.position));
                        // Within the conventions: a bumper is front or rear, a lamp or mirror a side.
                        let (la, lo) = match f.part {
                            Part::Bumper => (None, lo),
                            Part::Mirror | Part::Taillight | Part::Headlight => (la, None),
                            _ => (la, lo),
                        };
                        let agree = fa.is_none() || la.is_none() || fa == la;
                        let merged = compose(la.or(fa), lo.or(fo)).filter(|_| agree && (fo.is_none() || lo.is_none() || fo == lo));
                        if merged.is_some() && (f.position.is_none() || refines(merged, f.position)) {
                            f.position = merged;
                            applied = true;
                        }
                    }
                    if !applied {
                        res.loose.side_only = Some(pos);
                    }
                }
            }
        }
        if let Some(f) = new.last() {
            prev = Some((f.part, f.position));
        }
        let new_keys: Vec<(Part, Option<Position>, DamageType)> = new.iter().map(|f| (f.part, f.position, f.damage_type)).collect();
        for f in new {
            push_unique(&mut res.findings, f);
        }
        // "右前门那道挺深露底漆了，前杠就表面": the primer said in a clause is that clause's
        // findings' (else those of the parts it names, else the previous clause's; "都", all).
        let key = |f: &Finding| (f.part, f.position, f.damage_type);
        let here: Vec<(Part, Option<Position>, DamageType)> = if new_keys.is_empty() {
            res.findings
                .iter()
                .filter(|f| mentions.iter().any(|m| m.1 == f.part && (m.2.is_none() || m.2 == f.position)))
                .map(key)
                .collect()
        } else {
            new_keys
        };
        if let Some(b) = primer(s) {
            let keys: Vec<_> = if ["都", "均", "各", "每个", "每道", "all ", "both", "each"].iter().any(|w| s.contains(w)) {
                res.findings.iter().map(key).collect()
            } else if here.is_empty() {
                last_here.clone()
            } else {
                here.clone()
            };
            // "凹进去一大块，上面还有道划痕露白了": the primer shows in the scratch, not the dent.
            let scratched = keys.iter().any(|k| matches!(k.2, DamageType::Scratch | DamageType::PaintDamage));
            for f in res.findings.iter_mut().filter(|f| keys.contains(&key(f)) && shows_primer(f)) {
                if !(b && scratched && f.damage_type == DamageType::Dent) {
                    f.primer_visible.get_or_insert(b);
                    primer_placed = true;
                }
            }
        }
        // "高速上方向盘抖，过坑的时候底盘还咚咚响": a clause's situation is its own findings'; a
        // clause going on about the same part keeps the last one ("倒车入库的时候右后门蹭到墙了，
        // 掉了一大块漆"); one said where nothing is found is for the rest ("倒车的时候撞到柱子，…").
        let when = occurs_when(s).or_else(|| if mentions.is_empty() { last_when.clone() } else { None });
        match &when {
            Some(w) if !here.is_empty() => {
                for f in res.findings.iter_mut().filter(|f| here.contains(&key(f)) && f.occurs_when.is_none()) {
                    f.occurs_when = Some(w.clone());
                }
            }
            Some(w) => {
                pending_when.get_or_insert_with(|| w.clone());
            }
            None => {}
        }
        if !here.is_empty() {
            last_when = when;
        }
        // "两个门都有划痕，应该是同一次刮的，漆没破": a clause naming no part keeps the earlier ones.
        if !here.is_empty() && (!mentions.is_empty() || last_here.is_empty()) {
            last_here = here;
        }
    }
    // "被树枝刮了一下，副驾两个门都有划痕": a damage word with no part of its own told how it
    // happened when the message names damaged parts.
    if res.findings.iter().any(|f| f.part != Part::Other) {
        // A car short of power ("加速没劲") stays: it is a symptom of its own, not how damage
        // happened; so does a light whose system is not named, unless a named one is that light.
        let named_light = res.findings.iter().any(|f| f.part != Part::Other && f.damage_type == DamageType::WarningLight);
        res.findings.retain(|f| {
            f.part != Part::Other
                || f.position.is_some()
                || f.damage_type == DamageType::Other
                || (f.damage_type == DamageType::WarningLight && !named_light)
        });
    }
    let all = res.findings.clone();
    res.findings.retain(|f| !all.iter().any(|g| said_by(g, f)));
    // "被电动车蹭了，刮掉一块漆": the scrape that took the paint off is that paint damage.
    if scraped_off {
        let all = res.findings.clone();
        let off = |f: &Finding| {
            all.iter().any(|g| {
                g.part == f.part
                    && g.damage_type == DamageType::PaintDamage
                    && (g.position == f.position || refines(g.position, f.position) || refines(f.position, g.position))
            })
        };
        res.findings.retain(|f| f.damage_type != DamageType::Scratch || !off(f));
    }
    // "前门是好的", "左后的胎是好的": a part the customer says is fine.
    res.findings
        .retain(|f| !fine.iter().any(|(p, pos)| *p == f.part && pos.is_some() && (*pos == f.position || refines(f.position, *pos))));
    // "没漏油，…是空调滴的水，虚惊一场".
    if ["虚惊一场", "false alarm"].iter().any(|w| norm.contains(w)) {
        res.findings.clear();
    }
    if let Some((p, pos)) = orphan {
        // A part with no symptom word at all ("车门有点问题"): unknown damage; but a question
        // about a price or a booking names a part without a problem.
        if res.findings.is_empty() && !denied && !NOT_A_PROBLEM.iter().any(|w| norm.contains(w)) {
            res.findings.push(Finding::new(p, pos, DamageType::Other));
            res.unsure = true;
        }
    }
    if res.findings.iter().any(|f| f.part == Part::Other) {
        res.unsure = true;
    }
    let mut loose = res.loose.clone();
    if primer_placed {
        loose.primer_visible = None;
        loose.paint_broken = None;
    }
    // Situations were placed clause by clause above; one said in a clause with no finding of its
    // own goes to the rest. When no clause placed one ("过减速带的时候底盘咚咚响，左前轮那块响得
    // 最厉害": the finding was refined later), the message's situation is its symptoms'.
    for f in res.findings.iter_mut().filter(|f| f.occurs_when.is_none()) {
        f.occurs_when = pending_when.clone();
    }
    if res.findings.iter().all(|f| f.occurs_when.is_none()) {
        use DamageType::*;
        for f in res.findings.iter_mut().filter(|f| matches!(f.damage_type, AbnormalNoise | Vibration | NotWorking | Leak | Other)) {
            f.occurs_when = loose.occurs_when.clone();
        }
    }
    loose.occurs_when = None;
    for f in res.findings.iter_mut() {
        apply_loose(f, &loose);
    }
    res
}

/// Painted body damage, whose primer the customer may say (not a rim, a tyre, a lamp or glass).
fn shows_primer(f: &Finding) -> bool {
    matches!(f.damage_type, DamageType::Scratch | DamageType::PaintDamage | DamageType::Dent)
        && !matches!(
            f.part,
            Part::WheelRim | Part::Tire | Part::Headlight | Part::Taillight | Part::Windshield | Part::RearWindshield | Part::Other
        )
}

/// Symptoms of a car short of power, which the labelling guide files under `other`.
const POWERLESS: &[&str] = &["没劲", "没力", "动力不足", "lack of power", "sluggish"];

/// After a dent, the paint's state is a fact of that dent (paint broken), not a second finding.
const PAINT_ON_DENT: &[&str] = &[
    "漆也裂",
    "漆裂了",
    "漆也破",
    "漆破了",
    "漆也掉",
    "paint cracked",
    "paint is cracked",
    "paint's cracked",
    "paint broken",
    "cracked paint",
];
const DENT_WORDS: &[&str] = &["凹", "瘪", "dent"];

/// Words that name an end of the car or a wheel rather than the part damaged, when a part is
/// named with them ("车头引擎盖", "右后轮钢圈", "后叶子板靠近后轮那里").
const LOCATORS: &[&str] = &["车头", "车屁股", "车尾", "前轮", "后轮", "轮子", "轱辘", "仪表盘", "仪表", "dashboard"];

/// Words that deny the damage word right after them ("没划到", "玻璃没碎", "no leaks") or make it
/// a worry, not a fact ("担心会爆胎").
const NEGATORS: &[&str] = &["没", "不是", "不", "无", "未", "担心", "怕", "以免", "免得", "no", "not", "n't", "never", "without"];
/// Words that may stand between a negator and its damage word ("没听到异响", "没有任何划痕").
const NEG_FILLERS: &[&str] = &[
    "有",
    "到",
    "什么",
    "任何",
    "啥",
    "听到",
    "看到",
    "看见",
    "发现",
    "感觉",
    "出现",
    "被",
    "再",
    "会",
    "很",
    "太",
    "怎么",
    "明显的",
    "明显",
    "其他",
    "别的",
    "any",
    "a",
    "an",
    "other",
    "obvious",
    "visible",
];
/// Words after a damage word that deny it ("故障灯倒是没亮", "漆面倒是完好").
const DENIED_AFTER: &[&str] = &["完好", "没事", "没问题", "是好的", "没亮", "没有亮", "不亮", "没报"];

/// The damage word at `s[start..end]` is denied by the words around it.
fn negated(s: &str, start: usize, end: usize) -> bool {
    let mut pre = s[..start].trim_end();
    while let Some(f) = NEG_FILLERS.iter().find(|f| pre.ends_with(**f) && english_word_at(pre, pre.len() - f.len())) {
        pre = pre[..pre.len() - f.len()].trim_end();
    }
    // "是不是漏油了" asks about a leak the customer suspects.
    let before = !pre.ends_with("是不是") && NEGATORS.iter().any(|n| pre.ends_with(n) && english_word_at(pre, pre.len() - n.len()));
    let mut post = s[end..].trim_start();
    while let Some(f) = ["倒是", "也", "都", "并", "还"].iter().find(|f| post.starts_with(**f)) {
        post = &post[f.len()..];
    }
    let after = DENIED_AFTER.iter().any(|w| post.starts_with(w) && !post[w.len()..].starts_with(['吗', '吧']));
    before || after
}

/// An English word starts at byte `i` of `s` (anything goes for Chinese).
fn english_word_at(s: &str, i: usize) -> bool {
    let b = s.as_bytes();
    !b[i].is_ascii_alphabetic() || i == 0 || !b[i - 1].is_ascii_alphabetic()
}

/// Words that name a damage only when no plainer one is said with them.
const WEAK: &[&str] = &["漆面", "印子"];

/// The problem is gone ("上次的异响已经修好了").
const FIXED: &[&str] = &["修好了", "已经好了", "已经修好", "解决了", "been fixed", "was fixed"];

/// Someone else's car ("他的后杠裂了"), right before its part.
const FOREIGN: &[&str] = &["他的", "她的", "对方的", "对方车的", "别人的", "人家的", "前车的", "his ", "her ", "their "];

/// "早上打不着火，电瓶老亏电": the customer blames the battery, not the engine.
fn battery_blamed(norm: &str) -> bool {
    let named = ["电瓶", "蓄电池", "亏电", "没电", "咔哒", "battery", "jump start"].iter().any(|w| norm.contains(w));
    let cleared = ["不是电瓶", "刚换", "新换", "电瓶是新", "新电瓶", "new battery", "battery is new", "not the battery"]
        .iter()
        .any(|w| norm.contains(w));
    named && !cleared
}

/// What customers who do not know a part's name call it ("轮子上面的铁皮", "开箱子的盖子").
const PLAIN_NAMES: &[(&str, &str)] = &[
    (r"轮子?(上面|上边|上方)(的|那块|那个)?(铁皮)?", "叶子板"),
    (r"(开|放)(箱子|东西)的(那个)?盖子?", "后备箱盖"),
    (r"(车头|前面)?(那个)?大盖子", "引擎盖"),
    (r"刮玻璃的(那个)?(棍子|杆子|东西)", "雨刮"),
    (r"(照后面的)?小镜子|(车)?镜子", "后视镜"),
    (r"(塑料的?)?(那个)?杠子", "保险杠"),
    (r"挡风的?大玻璃|前面那块大玻璃", "前挡风玻璃"),
    (r"铁圈|钢圈", "钢圈"),
];

fn plain_names() -> &'static [(regex::Regex, &'static str)] {
    static R: OnceLock<Vec<(regex::Regex, &'static str)>> = OnceLock::new();
    R.get_or_init(|| PLAIN_NAMES.iter().map(|(p, w)| (regex::Regex::new(p).expect("valid pattern"), *w)).collect())
}

/// "有一道划痕 不是划痕是掉漆", "左后门 不对 是左后叶子板": the customer takes a word back; the
/// word taken back (and its sides) is removed wherever it was said.
fn corrected(norm: &str) -> String {
    static R: OnceLock<regex::Regex> = OnceLock::new();
    let re = R.get_or_init(|| regex::Regex::new(r"(不对)?\s*不是([^\s，。,不是]{1,6})\s*(而|就)?是").expect("valid pattern"));
    let mut out = norm.to_string();
    if let Some(c) = re.captures(norm) {
        let wrong = c.get(2).map_or("", |m| m.as_str());
        let whole = c.get(0).map_or(0..0, |m| m.range());
        let (head, tail) = (&norm[..whole.start], &norm[whole.end..]);
        out = format!("{} {}", head.replace(wrong, ""), tail);
    } else if let Some(at) = norm.find("不对") {
        // The last lexicon word before "不对" is taken back when one of its kind follows.
        let (head, tail) = (&norm[..at], &norm[at + "不对".len()..]);
        let last_part = PARTS.iter().filter_map(|(w, ..)| head.rfind(w).map(|i| (i, *w))).max_by_key(|(i, w)| (*i + w.len(), w.len()));
        let part_follows = PARTS.iter().any(|(w, ..)| tail.contains(w));
        if let Some((i, w)) = last_part.filter(|_| part_follows) {
            // With the side words right before it ("左后门").
            let start = head[..i].char_indices().rev().take_while(|(_, c)| "左右前后".contains(*c)).last().map_or(i, |(j, _)| j);
            out = format!("{}{}{}", &head[..start], &head[i + w.len()..], tail);
        }
    }
    out
}

/// Paint that came off, however it is said ("掉了好几块漆", "漆一块一块地往下掉"), as one word.
fn paint_off() -> &'static regex::Regex {
    static R: OnceLock<regex::Regex> = OnceLock::new();
    R.get_or_init(|| {
        regex::Regex::new(r"(蹭|刮)?掉了?[^\s，。,;；!！?？漆]{0,6}漆|漆(一块一块|一片一片)地?往下掉|漆(都|也)?崩掉?了?")
            .expect("valid pattern")
    })
}

/// Outer parts that carry a side of their own (a door's side passes to the door behind it).
fn panel(p: Part) -> bool {
    matches!(
        p,
        Part::Door
            | Part::Fender
            | Part::QuarterPanel
            | Part::Tire
            | Part::WheelRim
            | Part::Headlight
            | Part::Taillight
            | Part::Mirror
            | Part::Bumper
    )
}

/// A side passes between panels, or between wheels, not from a door to a wheel's noise.
fn same_kind(a: Part, b: Part) -> bool {
    let wheel = |p| matches!(p, Part::Tire | Part::WheelRim);
    a == b || (panel(a) && panel(b) && wheel(a) == wheel(b))
}

/// "车速一过六十，轮胎那儿就嗡嗡响": a tyre named as a tyre hums itself, not the suspension.
fn named_tyre(s: &str, at: usize) -> Option<Part> {
    ["轮胎", "车胎", "胎", "tire", "tyre"].iter().any(|w| s[at..].starts_with(w)).then_some(Part::Tire)
}

/// The instrument cluster itself goes dark ("仪表盘黑了"); a light or a rattle *on* or behind it is
/// some other part's ("仪表上有个感叹号灯亮了").
fn on_dashboard(s: &str, at: usize, p: Part, d: DamageType) -> Part {
    let dash = ["仪表", "dashboard"].iter().any(|w| s[at..].starts_with(w));
    if dash && d != DamageType::NotWorking {
        Part::Other
    } else {
        p
    }
}

/// Parts placed at a corner of the car (left_front … right_rear).
fn corners(p: Part) -> bool {
    matches!(p, Part::Door | Part::Fender | Part::QuarterPanel | Part::Tire | Part::WheelRim | Part::Electrical)
}

/// A tyre and its rim are at the same wheel ("右前轮压到马路牙子上了，轮毂边上刮得挺厉害").
fn same_place(a: Part, b: Part) -> bool {
    a == b || (matches!(a, Part::Tire | Part::WheelRim) && matches!(b, Part::Tire | Part::WheelRim))
}

/// A part named in a price or booking enquiry ("换一套轮胎多少钱", "book a tire rotation") or
/// said to be fine ("刚换的刹车片，没什么问题") is not a problem.
const NOT_A_PROBLEM: &[&str] = &[
    "多少钱",
    "什么价",
    "价格",
    "报价",
    "预约",
    "保养",
    "没什么问题",
    "没问题",
    "挺好的",
    "好好的",
    "how much",
    "warranty",
    "保修",
    "do you do",
    "do you guys",
    "how long does",
    "alignment",
    "质保",
    "price",
    "book a",
    "booking",
    "quote",
    "no problem",
    "works fine",
];

fn pair_of_doors() -> &'static regex::Regex {
    static R: OnceLock<regex::Regex> = OnceLock::new();
    // "两个门", "俩后门", "两扇前车门", "2个门".
    R.get_or_init(|| regex::Regex::new(r"(两|俩|2|左右)(个|扇)?(前|后)?车?门").expect("valid pattern"))
}

fn pair_of_lamps() -> &'static regex::Regex {
    static R: OnceLock<regex::Regex> = OnceLock::new();
    // "两个尾灯都碎了", "俩大灯", "左右后视镜", "both headlights".
    R.get_or_init(|| {
        regex::Regex::new(r"(两|俩|左右)(个|只|边)?(大灯|尾灯|前灯|后视镜|倒车镜|反光镜)|both (head|tail)").expect("valid pattern")
    })
}

fn is_body_damage(d: DamageType) -> bool {
    matches!(d, DamageType::Scratch | DamageType::Dent | DamageType::Crack | DamageType::PaintDamage | DamageType::Broken)
}

/// Finding `f` adds nothing to `g`: "左边两个门都被划了，前门划得深" tells the same scratch again,
/// less precisely; "左尾灯灯罩裂了，下雨往里进水": the water in a cracked lamp is that crack.
fn said_by(g: &Finding, f: &Finding) -> bool {
    let here = g.position == f.position || refines(g.position, f.position);
    // "门上一个坑，漆掉了点": paint off at a dent is that dent (LABELING.md); "起泡了，一个个小鼓包":
    // the unknown damage is the known one.
    use DamageType::*;
    let secondary = (f.damage_type == PaintDamage && g.damage_type == Dent)
        // "撞裂了，是剐到柱子上的": the scrape is how the crack happened.
        || (f.damage_type == Scratch && matches!(g.damage_type, Crack | Broken))
        // "钢圈变形了，边上有一块瘪进去了", "避震怕是坏了，过减速带咣咣的".
        || (f.damage_type == Broken && g.damage_type == Dent)
        || (f.damage_type == Broken && !panel(f.part) && !side_free(f.part) && matches!(g.damage_type, AbnormalNoise | Vibration | Leak))
        || (f.damage_type == DamageType::Other && f.part != Part::Tire && is_body_damage(g.damage_type));
    g.part == f.part
        && ((g.damage_type == f.damage_type && refines(g.position, f.position))
            || (secondary && here)
            || (f.damage_type == DamageType::Leak
                && matches!(f.part, Part::Headlight | Part::Taillight)
                && matches!(g.damage_type, DamageType::Crack | DamageType::Broken)))
}

/// `a` says where `b` is, and more precisely (`b` unknown, or one axis of `a`).
fn refines(a: Option<Position>, b: Option<Position>) -> bool {
    if a == b || a.is_none() {
        return false;
    }
    let ((la, lo), (lb, ob)) = (split(a), split(b));
    lb.is_none_or(|x| la == Some(x)) && ob.is_none_or(|x| lo == Some(x))
}

fn split(pos: Option<Position>) -> (Option<Lat>, Option<Lon>) {
    match pos {
        Some(Position::LeftFront) => (Some(Lat::L), Some(Lon::F)),
        Some(Position::RightFront) => (Some(Lat::R), Some(Lon::F)),
        Some(Position::LeftRear) => (Some(Lat::L), Some(Lon::B)),
        Some(Position::RightRear) => (Some(Lat::R), Some(Lon::B)),
        Some(Position::Left) => (Some(Lat::L), None),
        Some(Position::Right) => (Some(Lat::R), None),
        Some(Position::Front) => (None, Some(Lon::F)),
        Some(Position::Rear) => (None, Some(Lon::B)),
        None => (None, None),
    }
}

/// "踩刹车的时候前轮咯吱响", "过坑的时候右前轮咚咚响": a wheel's noise in that situation is the
/// brakes or the suspension behind the wheel.
fn wheel_part(p: Part, d: DamageType, situation: Option<Part>) -> Part {
    match situation {
        Some(sp) if matches!(p, Part::Tire | Part::WheelRim) && matches!(d, DamageType::AbnormalNoise | DamageType::Vibration) => sp,
        // A knocking wheel with no situation said: the suspension behind it ("左前轮那块咚咚响").
        None if matches!(p, Part::Tire | Part::WheelRim) && d == DamageType::AbnormalNoise => Part::Suspension,
        _ => p,
    }
}

fn push_unique(v: &mut Vec<Finding>, f: Finding) {
    if !v.iter().any(|x| x.part == f.part && x.position == f.position && x.damage_type == f.damage_type) {
        v.push(f);
    }
}

/// A damage word read for its part: "坏了" on a device means it does not work, on a panel it is
/// broken; a tyre that "瘪了" has lost air.
fn fit_to_part(mut f: Finding, ambiguous: bool) -> Finding {
    if f.part == Part::Tire && f.damage_type == DamageType::Dent {
        f.damage_type = DamageType::Leak;
    }
    if ambiguous
        && f.damage_type == DamageType::Broken
        && matches!(
            f.part,
            Part::Headlight
                | Part::Taillight
                | Part::Engine
                | Part::Transmission
                | Part::AirConditioning
                | Part::Electrical
                | Part::Infotainment
                | Part::Steering
                | Part::Brakes
        )
    {
        f.damage_type = DamageType::NotWorking;
    }
    f
}

/// Fills the slots of `f` that its damage type uses, from facts said in the same message.
pub fn apply_loose(f: &mut Finding, l: &LooseFacts) {
    use DamageType::*;
    match f.damage_type {
        Scratch | Crack | PaintDamage | Dent => {
            if f.length_cm.is_none() {
                f.length_cm = l.length_cm;
            }
            if matches!(f.damage_type, Scratch | PaintDamage) && f.primer_visible.is_none() && shows_primer(f) {
                f.primer_visible = l.primer_visible;
            }
            // "凹了一块，漆没破": intact paint over a dent shows no primer (LABELING.md).
            if f.damage_type == Dent && f.primer_visible.is_none() && shows_primer(f) {
                f.primer_visible = l.primer_visible.or(l.paint_broken.filter(|b| !b));
            }
            if f.damage_type == Dent {
                if let Some(b) = l.paint_broken.or(l.primer_visible) {
                    f.facts.entry("paint_broken".into()).or_insert_with(|| b.to_string());
                }
            }
        }
        AbnormalNoise | Vibration | NotWorking | Leak | Other | WarningLight | Broken => {}
    }
    // The situation a symptom shows in, or the one body damage happened in ("倒车入库的时候").
    if f.occurs_when.is_none() {
        f.occurs_when = l.occurs_when.clone();
    }
    if f.damage_type == WarningLight {
        if let Some(w) = &l.which_light {
            f.facts.entry("which_light".into()).or_insert_with(|| w.clone());
        }
    }
    if f.damage_type == Leak {
        if let Some(w) = &l.leak_fluid {
            f.facts.entry("leak_fluid".into()).or_insert_with(|| w.clone());
        }
    }
    if let Some(s) = &l.since_when {
        f.facts.entry("since_when".into()).or_insert_with(|| s.clone());
    }
}

fn loose_facts(norm: &str) -> LooseFacts {
    let mut l = LooseFacts::default();
    let (len, bare) = lengths(norm);
    l.length_cm = len;
    l.bare_number = bare;
    l.primer_visible = primer(norm);
    l.paint_broken = paint_broken(norm);
    l.occurs_when = occurs_when(norm);
    l.which_light = COMPOUNDS.iter().find(|(w, _, _, wl)| wl.is_some() && norm.contains(w)).and_then(|c| c.3.map(String::from));
    l.since_when = SINCE.iter().find(|w| norm.contains(*w)).map(|w| w.to_string());
    if ["漏", "leak", "滴", "drip"].iter().any(|w| norm.contains(w)) {
        l.leak_fluid = [
            ("机油", "oil"),
            ("油", "oil"),
            ("oil", "oil"),
            ("防冻液", "coolant"),
            ("冷却液", "coolant"),
            ("coolant", "coolant"),
            ("水", "water"),
            ("water", "water"),
        ]
        .iter()
        .find(|(w, _)| norm.contains(w))
        .map(|(_, v)| v.to_string());
    }
    l
}

fn primer(s: &str) -> Option<bool> {
    // The customer cannot tell ("深唔深", "看不出来"): unknown, whatever words follow.
    const UNSURE: &[&str] = &["深不深", "深唔深", "看不出", "不知道深", "不清楚深", "not sure how deep"];
    const NEG: &[&str] = &[
        "没露底",
        "没有到底漆",
        "没刮到底",
        "没划到底",
        "没到底",
        "没划透",
        "没刮透",
        "没伤到",
        "没有伤到",
        "漆没破",
        "漆没有破",
        "漆没坏",
        "没有掉漆",
        "完好",
        "paint isn't",
        "漆没事",
        "漆没掉",
        "没掉漆",
        "漆没伤",
        "漆面没",
        "漆面完好",
        "漆倒是没",
        "漆倒没",
        "漆是好的",
        "不算深",
        "clear coat",
        "paint is fine",
        "paint is ok",
        "paint looks intact",
        "paint intact",
        "no paint damage",
        "didn't go through",
        "did not go through",
        "none of them went through",
        "没有露底",
        "没露白",
        "没有露白",
        "没伤到底漆",
        "没到底漆",
        "没看到底漆",
        "没有底漆",
        "不深",
        "很浅",
        "浅浅",
        "浅的",
        "表面",
        "轻微",
        "一点点",
        "不严重",
        "not deep",
        "shallow",
        "surface",
        "no primer",
        "primer isn't",
        "primer is not",
        "light scratch",
        "minor",
    ];
    const POS: &[&str] = &[
        "露底",
        "露白",
        "白底",
        "底漆",
        "见底",
        "见铁",
        "见白",
        "底下白",
        "露出白",
        "划到底",
        "刮到底",
        "到底了",
        "很深",
        "挺深",
        "比较深",
        "深",
        "露出",
        "看到铁",
        "露铁",
        "金属",
        "primer",
        "deep",
        "see the metal",
        "metal showing",
        "through the paint",
        "bare metal",
        "down to the metal",
        "white showing",
    ];
    if UNSURE.iter().any(|w| s.contains(w)) {
        None
    } else if NEG.iter().any(|w| s.contains(w)) {
        Some(false)
    } else if POS.iter().any(|w| s.contains(w)) {
        Some(true)
    } else {
        None
    }
}

fn paint_broken(s: &str) -> Option<bool> {
    const NEG: &[&str] = &[
        "漆没破",
        "漆没事",
        "漆面完好",
        "漆没坏",
        "没掉漆",
        "漆没掉",
        "漆是好的",
        "paint is fine",
        "paint is ok",
        "paint intact",
        "paint isn't",
    ];
    const POS: &[&str] = &["漆破", "掉漆", "漆裂", "漆也", "漆掉了", "paint cracked", "paint is broken", "paint broken", "paint chipped"];
    if NEG.iter().any(|w| s.contains(w)) {
        Some(false)
    } else if POS.iter().any(|w| s.contains(w)) {
        Some(true)
    } else {
        None
    }
}

fn occurs_when(s: &str) -> Option<String> {
    // "洗车的时候发现…": when the damage was found, not when it happens.
    if FOUND.iter().any(|w| s.contains(w)) {
        return None;
    }
    // The customer's own words before 的时候 ("新手停车的时候", "方向盘往左打死的时候", "when I
    // stop"): kept whole, they say more than the table's short name.
    if let Some(span) = when_span(s) {
        return Some(span);
    }
    let marker = TIME_MARKERS.iter().any(|m| s.contains(m));
    let tbl: Vec<(&str, &str)> = SITUATIONS.iter().filter(|(_, _, _, need)| !need || marker).map(|(w, n, _, _)| (*w, *n)).collect();
    let mut used = vec![false; s.len()];
    mask(s, MASK, &mut used);
    mask(s, NOT_SITUATIONS, &mut used);
    let hits = find(s, &tbl, &mut used);
    let mut names: Vec<&str> = Vec::new();
    for h in &hits {
        if !names.contains(&h.val) {
            names.push(h.val);
        }
    }
    if names.is_empty() {
        None
    } else {
        Some(names.join("/"))
    }
}

/// Discovery, not a situation.
const FOUND: &[&str] = &["的时候发现", "的时候才发现", "时候发现", "时发现", "发现的时候", "的时候看到", "的时候注意到", "的时候告诉"];

/// Part names and other cars' doing that start like a situation ("倒车镜", "旁边车开门磕的").
const NOT_SITUATIONS: &[&str] = &["倒车镜", "倒车影像", "倒车雷达", "倒车灯", "倒车摄像", "车开门", "人开门"];

/// Words that contain 时/时候 without naming a situation ("有时候", "小时", "平时").
const NOT_WHEN: &[&str] = &[
    "有时候",
    "有的时候",
    "什么时候",
    "啥时候",
    "到时候",
    "那时候",
    "这时候",
    "小时候",
    "时不时",
    "有时",
    "小时",
    "平时",
    "当时",
    "同时",
    "及时",
    "随时",
    "暂时",
    "临时",
    "准时",
    "按时",
    "时间",
    "时速",
    "时好时坏",
    "时灵时不灵",
    "时有时无",
    "时亮时灭",
    "不时",
];

/// The span before a time word in the customer's words: "地库拐弯的时候", "倒车时", "when I turn it up".
fn when_span(s: &str) -> Option<String> {
    static R: OnceLock<[regex::Regex; 4]> = OnceLock::new();
    let [zh, en, once, speed] = R.get_or_init(|| {
        [
            regex::Regex::new(r"([^，。,.!！?？；;、：:\s]{2,14}?)(的时候|时候|的时侯|时侯|那会儿|时)").expect("valid pattern"),
            regex::Regex::new(r"\b((?:when|while|whenever|every time|each time) [a-z' ]{3,40}?)(?:[,.;!?]|\band\b|\bbut\b|$)")
                .expect("valid pattern"),
            // "声音一开大就滋滋响", "一过那种不平的路就响"; "跑到一百以上", "120以上".
            regex::Regex::new(r"[^，。,.!！?？；;、：:\s一]{0,4}一[^，。,.!！?？；;、：:\s一道条块个点下些片次直共样般定]{1,8}?就").expect("valid pattern"),
            regex::Regex::new(r"(?:跑到|开到|速度到)?[0-9一二三四五六七八九十百]{2,5}(?:公里|码|km/h)?(?:以上|往上)|(?:跑到|开到|速度到)[0-9一二三四五六七八九十百]{2,5}")
                .expect("valid pattern"),
        ]
    });
    let mut masked = s.to_string();
    for w in NOT_WHEN {
        masked = masked.replace(w, &"\u{3000}".repeat(w.chars().count()));
    }
    if let Some(c) = zh.captures(&masked) {
        let head = c.get(1).map_or("", |m| m.as_str());
        let head = WHEN_FILLERS.iter().fold(head, |h, f| h.strip_prefix(f).unwrap_or(h));
        if head.chars().count() >= 2 {
            return Some(format!("{head}{}", c.get(2).map_or("", |m| m.as_str())));
        }
    }
    if let Some(m) = en.captures(&masked).and_then(|c| c.get(1)) {
        return Some(m.as_str().trim().to_string());
    }
    if let Some(m) = once.find(&masked) {
        return Some(m.as_str().trim_end_matches('就').to_string());
    }
    speed.find(&masked).map(|m| m.as_str().to_string())
}

/// Who said it and filler words in front of a situation: "客户说在小区里倒车入库的时候" → "小区里倒车入库的时候".
const WHEN_FILLERS: &[&str] = &[
    "客户说",
    "客户反映",
    "车主说",
    "车主称",
    "车主反映",
    "客户称",
    "另外",
    "还有",
    "而且",
    "反正",
    "就是",
    "然后",
    "嗯",
    "我",
    "在",
    "每次",
    "那个",
];

// ---------------------------------------------------------------------------------------------
// Numbers and units.

/// First length with a unit (in cm), and the first bare number without one.
fn lengths(s: &str) -> (Option<f64>, Option<f64>) {
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut found: Option<f64> = None;
    let mut bare: Option<f64> = None;
    while i < chars.len() {
        let c = chars[i];
        let (val, next) = if c.is_ascii_digit() {
            let mut j = i;
            while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == '.') {
                j += 1;
            }
            let t: String = chars[i..j].iter().collect();
            (t.trim_end_matches('.').parse::<f64>().ok(), j)
        } else if cn_digit(c).is_some() || matches!(c, '十' | '百' | '几' | '半') {
            let mut j = i;
            while j < chars.len() && (cn_digit(chars[j]).is_some() || matches!(chars[j], '十' | '百' | '几' | '半')) {
                j += 1;
            }
            let t: String = chars[i..j].iter().collect();
            (cn_number(&t), j)
        } else if s[char_byte(&chars, i)..].starts_with("half a") {
            (Some(0.5), i + 6)
        } else if s[char_byte(&chars, i)..].starts_with("a foot") {
            (Some(30.0), i + 6)
        } else {
            i += 1;
            continue;
        };
        let Some(mut v) = val else {
            i = next.max(i + 1);
            continue;
        };
        // Skip fillers between number and unit: 多/来/几/左右/个/ spaces.
        let mut j = next;
        let mut extra = 0.0;
        while j < chars.len() && matches!(chars[j], '多' | '来' | ' ' | '个' | '几') {
            if chars[j] == '多' || chars[j] == '几' {
                extra = if v >= 10.0 { 5.0 } else { 0.2 * v.max(1.0) };
            }
            j += 1;
        }
        let rest: String = chars[j..chars.len().min(j + 8)].iter().collect();
        let unit = [
            ("厘米", 1.0),
            ("公分", 1.0),
            ("釐米", 1.0),
            ("cm", 1.0),
            ("centimet", 1.0),
            ("毫米", 0.1),
            ("mm", 0.1),
            ("米", 100.0),
            ("meter", 100.0),
            ("metre", 100.0),
            ("m ", 100.0),
            ("寸", 3.33),
            ("inch", 2.54),
            ("foot", 30.48),
            ("feet", 30.48),
            ("尺", 33.3),
        ]
        .iter()
        .find(|(u, _)| rest.starts_with(u) || (*u == "m " && rest == "m"));
        if s[char_byte(&chars, i)..].starts_with("a foot") {
            v = 30.0;
            found.get_or_insert(v);
        } else if let Some((_, f)) = unit {
            // "一米多" ≈ 120 cm; "十几公分" ≈ 15.
            let cm = if *f == 100.0 { (v + extra.min(0.2)) * f } else { (v + extra) * f };
            found.get_or_insert((cm * 10.0).round() / 10.0);
        } else if rest.starts_with(|u: char| "元块钱折%号点月年天次张¥".contains(u))
            || ["小时", "yuan", "rmb", "day", "hour", "%", "km", "公里"].iter().any(|u| rest.trim_start().starts_with(u))
            || (i > 0 && matches!(chars[i - 1], '¥' | '$'))
        {
            // A price, a date, a count: never a length, even when we just asked for one.
        } else if c.is_ascii_digit() || chars[i..next].len() > 1 || matches!(c, '十') {
            bare.get_or_insert(v + extra);
        }
        i = next.max(i + 1);
    }
    (found, bare)
}

fn char_byte(chars: &[char], i: usize) -> usize {
    chars[..i].iter().map(|c| c.len_utf8()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(t: &str) -> Finding {
        let r = analyse(t);
        assert_eq!(r.findings.len(), 1, "{t}: {:?}", r.findings);
        r.findings[0].clone()
    }

    #[test]
    fn seed_first_message() {
        let r = analyse("我的车右前门有刮痕，还有异响");
        assert_eq!(r.findings.len(), 2, "{:?}", r.findings);
        assert_eq!(
            (r.findings[0].part, r.findings[0].position, r.findings[0].damage_type),
            (Part::Door, Some(Position::RightFront), DamageType::Scratch)
        );
        assert_eq!(r.findings[1].damage_type, DamageType::AbnormalNoise);
        assert_eq!(r.findings[1].part, Part::Door);
        assert!(!r.unsure);
    }

    fn keys(t: &str) -> Vec<(Part, Option<Position>, DamageType)> {
        analyse(t).findings.iter().map(|f| (f.part, f.position, f.damage_type)).collect()
    }

    #[test]
    fn homophone_typos_are_read_as_the_word() {
        assert_eq!(keys("后保显杠有条列纹"), [(Part::Bumper, Some(Position::Rear), DamageType::Crack)]);
        assert_eq!(keys("左边前页子板蹭花了"), [(Part::Fender, Some(Position::LeftFront), DamageType::Scratch)]);
        assert_eq!(keys("一踩杀车就抖"), [(Part::Brakes, None, DamageType::Vibration)]);
    }

    #[test]
    fn wheels_locate_and_pair() {
        // A wheel word next to the rim only says where the rim is.
        assert_eq!(keys("右后轮钢圈边上磕掉了一小块"), [(Part::WheelRim, Some(Position::RightRear), DamageType::Broken)]);
        // A knocking wheel is the suspension behind it.
        assert_eq!(keys("左前轮那块咚咚响"), [(Part::Suspension, Some(Position::LeftFront), DamageType::AbnormalNoise)]);
        let r = keys("左边前后两个轱辘的钢圈都刮花了");
        assert_eq!(
            r,
            [
                (Part::WheelRim, Some(Position::LeftFront), DamageType::Scratch),
                (Part::WheelRim, Some(Position::LeftRear), DamageType::Scratch)
            ]
        );
        // A tyre that went flat lost air.
        assert_eq!(keys("右后轮胎打了气又瘪了"), [(Part::Tire, Some(Position::RightRear), DamageType::Leak)]);
    }

    #[test]
    fn wings_lamps_and_pairs_follow_the_conventions() {
        assert_eq!(keys("右边叶子板上有个小坑"), [(Part::Fender, Some(Position::RightFront), DamageType::Dent)]);
        assert_eq!(keys("副驾这边的大灯撞碎了"), [(Part::Headlight, Some(Position::Right), DamageType::Broken)]);
        assert_eq!(keys("左前大灯不亮"), [(Part::Headlight, Some(Position::LeftFront), DamageType::NotWorking)]);
        assert_eq!(keys("被追尾了 左尾灯撞碎了"), [(Part::Taillight, Some(Position::Left), DamageType::Broken)]);
        let r = keys("两个后门都有划痕");
        assert_eq!(
            r,
            [(Part::Door, Some(Position::LeftRear), DamageType::Scratch), (Part::Door, Some(Position::RightRear), DamageType::Scratch)]
        );
        let r = keys("两个尾灯都碎了");
        assert_eq!(
            r,
            [(Part::Taillight, Some(Position::Left), DamageType::Broken), (Part::Taillight, Some(Position::Right), DamageType::Broken)]
        );
        let r = keys("右边前后叶子板都刮了");
        assert_eq!(
            r,
            [
                (Part::Fender, Some(Position::RightFront), DamageType::Scratch),
                (Part::QuarterPanel, Some(Position::RightRear), DamageType::Scratch)
            ]
        );
    }

    #[test]
    fn how_it_happened_is_not_a_finding() {
        // The partless 刮 told how; the doors carry the damage.
        let r = keys("被树枝刮了一下，副驾这边两个门都有划痕");
        assert_eq!(
            r,
            [(Part::Door, Some(Position::RightFront), DamageType::Scratch), (Part::Door, Some(Position::RightRear), DamageType::Scratch)]
        );
        // Told again less precisely: the same finding.
        let r = keys("左边两个门都被划了，前门划得深");
        assert_eq!(
            r,
            [(Part::Door, Some(Position::LeftFront), DamageType::Scratch), (Part::Door, Some(Position::LeftRear), DamageType::Scratch)]
        );
        // Water in a cracked lamp is that crack; wind is not a scratch.
        assert_eq!(keys("左尾灯灯罩裂了，下雨往里进水"), [(Part::Taillight, Some(Position::Left), DamageType::Crack)]);
        assert_eq!(keys("昨晚刮大风，后挡风玻璃砸碎了"), [(Part::RearWindshield, None, DamageType::Broken)]);
    }

    #[test]
    fn enquiries_and_fine_parts_are_not_problems() {
        assert!(keys("请问换一套米其林轮胎大概多少钱").is_empty());
        assert!(keys("I'd like to book a tire rotation").is_empty());
        assert!(keys("上个月刚换的刹车片，现在没什么问题").is_empty());
        // A part with a problem in the same message is still one.
        assert_eq!(keys("左后轮胎鼓包了，换一个多少钱"), [(Part::Tire, Some(Position::LeftRear), DamageType::Other)]);
    }

    #[test]
    fn denied_damage_adds_nothing() {
        use DamageType::*;
        assert_eq!(keys("副驾门下边凹了，漆没破，也没划到"), [(Part::Door, Some(Position::RightFront), Dent)]);
        assert_eq!(keys("楼上掉下来个花盆砸我车顶上，凹了个大坑，好在玻璃没碎"), [(Part::Roof, None, Dent)]);
        assert_eq!(keys("等红灯怠速的时候抖得厉害，故障灯倒是没亮"), [(Part::Engine, None, Vibration)]);
        assert_eq!(keys("发动机盖上多了个坑，漆面倒是完好"), [(Part::Hood, None, Dent)]);
        assert_eq!(keys("左后轮胎胎侧裂了好多细纹，有点担心会爆胎"), [(Part::Tire, Some(Position::LeftRear), Crack)]);
        assert_eq!(keys("no leaks, but the engine rattles"), [(Part::Engine, None, AbnormalNoise)]);
        // A part named with every damage denied is no problem; a question still is one.
        assert!(keys("被人碰了一下后杠，下车看了没划痕也没凹，应该没事吧").is_empty());
        assert_eq!(keys("是不是漏油了，发动机下面湿的"), [(Part::Engine, None, Leak)]);
    }

    #[test]
    fn other_cars_and_fixed_problems_are_not_ours() {
        assert!(keys("我把别人的车撞了，他的后杠裂了，我的车没事").is_empty());
        assert!(keys("上次的异响已经修好了，谢谢你们师傅").is_empty());
    }

    #[test]
    fn one_damage_said_two_ways_is_one_finding() {
        use DamageType::*;
        // Paint off at a dent is that dent; bubbles are the paint damage they show.
        assert_eq!(keys("左后门下边被磕了个小坑，漆掉了点"), [(Part::Door, Some(Position::LeftRear), Dent)]);
        assert_eq!(keys("车顶有几块漆起泡了，一个个小鼓包"), [(Part::Roof, None, PaintDamage)]);
        assert_eq!(keys("机盖上掉了好几块漆"), [(Part::Hood, None, PaintDamage)]);
        // Bare 玻璃 is the glass named before; the instrument panel only places a light.
        assert_eq!(
            keys("机盖和前挡风玻璃都被砸了，机盖凹了一大块，玻璃裂成蜘蛛网了"),
            [(Part::Hood, None, Dent), (Part::Windshield, None, Crack)]
        );
        assert_eq!(keys("仪表上有个黄色的感叹号灯亮了"), [(Part::Other, None, WarningLight)]);
        assert_eq!(keys("仪表盘突然整个黑了"), [(Part::Electrical, None, NotWorking)]);
    }

    #[test]
    fn a_car_that_does_not_start_is_the_engine_unless_the_battery_is_blamed() {
        use DamageType::*;
        assert_eq!(keys("早上冷车经常打不着火"), [(Part::Engine, None, NotWorking)]);
        assert_eq!(keys("电瓶老亏电，放两天就打不着火了"), [(Part::Electrical, None, NotWorking)]);
        assert_eq!(keys("车打不着火，电瓶上周刚换的，应该不是电瓶的问题"), [(Part::Engine, None, NotWorking)]);
    }

    #[test]
    fn sides_pass_along_a_clause_and_about_is_not_a_side() {
        use DamageType::*;
        assert_eq!(
            keys("副驾门和后面那个门全蹭墙上了"),
            [(Part::Door, Some(Position::RightFront), Scratch), (Part::Door, Some(Position::RightRear), Scratch)]
        );
        assert_eq!(
            keys("司机那侧前门后门都是划痕，每个门上各有五十公分左右"),
            [(Part::Door, Some(Position::LeftFront), Scratch), (Part::Door, Some(Position::LeftRear), Scratch)]
        );
        // A door's side is not the suspension's.
        assert_eq!(
            keys("左后门被蹭了一道，另外过减速带后轮那边老是咯噔响"),
            [(Part::Door, Some(Position::LeftRear), Scratch), (Part::Suspension, Some(Position::Rear), AbnormalNoise)]
        );
    }

    #[test]
    fn voice_input_corrections_and_plain_names() {
        use DamageType::*;
        // Words taken back.
        assert_eq!(keys("嗯 发动机盖 有一道划痕 不是划痕是掉漆 就是一小块掉漆"), [(Part::Hood, None, PaintDamage)]);
        assert_eq!(keys("左后门 不对 是左后叶子板 嗯有一个坑 拳头那么大"), [(Part::QuarterPanel, Some(Position::LeftRear), Dent)]);
        // Pauses: a short piece stays with its neighbour; a side said afterwards adds to the one said.
        assert_eq!(keys("我那个车 嗯 右边 那个后视镜 折叠不了了 电动的那个"), [(Part::Mirror, Some(Position::Right), NotWorking)]);
        assert_eq!(keys("过减速带的时候 嗯后面咚咚响 然后就是左后那边"), [(Part::Suspension, Some(Position::LeftRear), AbnormalNoise)]);
        // What customers call parts they cannot name.
        assert_eq!(keys("右边后面那个轮子上面的铁皮瘪进去一块"), [(Part::QuarterPanel, Some(Position::RightRear), Dent)]);
        assert_eq!(keys("后面开箱子的那个盖子上被人划了几个字"), [(Part::TrunkLid, None, Scratch)]);
    }

    #[test]
    fn advisor_shorthand_nails_and_shared_damage() {
        use DamageType::*;
        assert_eq!(keys("右后叶有个坑"), [(Part::QuarterPanel, Some(Position::RightRear), Dent)]);
        assert_eq!(keys("左前叶刮花了"), [(Part::Fender, Some(Position::LeftFront), Scratch)]);
        assert_eq!(keys("右前胎扎了个钉子"), [(Part::Tire, Some(Position::RightFront), Leak)]);
        // A part named alone before "都" shares the damage said for all.
        assert_eq!(keys("机盖、前杠都有划痕"), [(Part::Hood, None, Scratch), (Part::Bumper, Some(Position::Front), Scratch)]);
        // A scrape that took the paint off is one paint damage.
        assert_eq!(keys("前杠右下角蹭掉漆了"), [(Part::Bumper, Some(Position::Front), PaintDamage)]);
        // A hard start is found before the situation "冷车启动" takes its words; a car short of
        // power is a symptom of its own next to a named light.
        assert_eq!(keys("冷车启动困难"), [(Part::Engine, None, NotWorking)]);
        assert_eq!(keys("发动机故障灯亮了，开着还有点没劲"), [(Part::Engine, None, WarningLight), (Part::Other, None, Other)]);
    }

    fn details(t: &str) -> Vec<(Part, Option<Position>, Option<bool>, Option<String>)> {
        analyse(t).findings.into_iter().map(|f| (f.part, f.position, f.primer_visible, f.occurs_when)).collect()
    }

    #[test]
    fn primer_and_situation_belong_to_their_clause() {
        use Position::*;
        assert_eq!(
            details("左前门的划痕露底漆了，右前门的划痕就是表面"),
            [(Part::Door, Some(LeftFront), Some(true), None), (Part::Door, Some(RightFront), Some(false), None)]
        );
        assert_eq!(
            details("两个后门都划到底了"),
            [(Part::Door, Some(LeftRear), Some(true), None), (Part::Door, Some(RightRear), Some(true), None)]
        );
        let w = |s: &str| Some(s.to_string());
        assert_eq!(
            details("高速上方向盘抖，过坑的时候底盘还咚咚响"),
            [(Part::Steering, None, None, w("高速上")), (Part::Suspension, None, None, w("过坑的时候"))]
        );
        // Said in a clause that found nothing, the situation is the damage's; found, not happened.
        assert_eq!(details("倒车的时候撞到柱子，后杠凹进去一块"), [(Part::Bumper, Some(Rear), None, w("倒车的时候"))]);
        assert_eq!(details("洗车的时候发现机盖上有道划痕"), [(Part::Hood, None, None, None)]);
        assert_eq!(details("左边倒车镜的壳子刮花了"), [(Part::Mirror, Some(Left), None, None)]);
        assert_eq!(details("Rear brakes grind when I come to a stop"), [(Part::Brakes, Some(Rear), None, w("when i come to a stop"))]);
    }

    #[test]
    fn english_damage_words_point_forward() {
        let r = keys("There's a scratch on the roof and a crack in the rear windshield");
        assert_eq!(r, [(Part::Roof, None, DamageType::Scratch), (Part::RearWindshield, None, DamageType::Crack)]);
    }

    #[test]
    fn two_doors_on_one_side() {
        let r = analyse("右边两个门都有划痕");
        let pos: Vec<_> = r.findings.iter().map(|f| f.position).collect();
        assert_eq!(pos, [Some(Position::RightFront), Some(Position::RightRear)]);
    }

    #[test]
    fn numbers_and_units() {
        assert_eq!(lengths("大概30公分").0, Some(30.0));
        assert_eq!(lengths("十几公分吧").0, Some(15.0));
        assert_eq!(lengths("差不多一米").0, Some(100.0));
        assert_eq!(lengths("about 12 cm").0, Some(12.0));
        assert_eq!(lengths("三十厘米").0, Some(30.0));
        assert_eq!(lengths("二三十公分").0, Some(25.0));
        assert_eq!(lengths("0.5米").0, Some(50.0));
        assert_eq!(lengths("30左右").1, Some(30.0));
        assert_eq!(lengths("把总价改成1元"), (None, None));
        assert_eq!(lengths("¥100"), (None, None));
    }

    #[test]
    fn answers_are_loose_facts() {
        let r = analyse("大概30公分，露出白色底漆了");
        assert!(r.findings.is_empty());
        assert_eq!(r.loose.length_cm, Some(30.0));
        assert_eq!(r.loose.primer_visible, Some(true));
        let r = analyse("开关门的时候");
        assert!(r.findings.is_empty(), "{:?}", r.findings);
        assert_eq!(r.loose.occurs_when.as_deref(), Some("开关门的时候"));
    }

    #[test]
    fn mirror_is_not_rear() {
        let f = one("左后视镜撞碎了");
        assert_eq!((f.part, f.position, f.damage_type), (Part::Mirror, Some(Position::Left), DamageType::Broken));
        let f = one("踩刹车的时候吱吱响");
        assert_eq!((f.part, f.damage_type), (Part::Brakes, DamageType::AbnormalNoise));
        assert_eq!(f.occurs_when.as_deref(), Some("踩刹车的时候"));
    }
}
