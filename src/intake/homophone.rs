//! Homophone repair: voice input and pinyin keyboards put the right sound on the wrong
//! character (保险扛, 翼子版, 后被箱, 画痕). Before the lexicon reads a text, a run of characters
//! that sounds like one of its Chinese words (any reading of each character, tones ignored) and
//! differs from it in exactly one character is rewritten to that word. Two wrong characters are
//! never repaired ("一想" stays, it is not "异响"), nor is a run that already is a lexicon word.

use std::collections::{HashMap, HashSet};

use pinyin::ToPinyinMulti;

/// Plain (toneless) readings of a character; empty for anything but a Chinese character.
fn readings(c: char) -> Vec<&'static str> {
    c.to_pinyin_multi().map(|multi| multi.into_iter().map(|p| p.plain()).collect()).unwrap_or_default()
}

struct Word {
    chars: Vec<char>,
    sounds: Vec<Vec<&'static str>>,
}

/// The words to repair towards, indexed by the readings of their first character.
pub struct Homophones {
    words: Vec<Word>,
    by_sound: HashMap<&'static str, Vec<usize>>,
    literal: HashSet<String>,
}

impl Homophones {
    /// Only words of three or more Chinese characters are repaired towards: two-character
    /// words have too many everyday homophones (司机 and 死机, 一想 and 异响); their common typos
    /// are lexicon entries of their own.
    pub fn new<'a>(words: impl IntoIterator<Item = &'a str>) -> Self {
        let mut h = Homophones { words: Vec::new(), by_sound: HashMap::new(), literal: HashSet::new() };
        for w in words {
            let chars: Vec<char> = w.chars().collect();
            let sounds: Vec<Vec<&'static str>> = chars.iter().map(|c| readings(*c)).collect();
            if chars.len() < 3 || sounds.iter().any(Vec::is_empty) || !h.literal.insert(w.to_string()) {
                continue;
            }
            for s in &sounds[0] {
                h.by_sound.entry(*s).or_default().push(h.words.len());
            }
            h.words.push(Word { chars, sounds });
        }
        h
    }

    /// `text` with homophone misspellings of the words rewritten; same length in characters.
    pub fn repair(&self, text: &str) -> String {
        let chars: Vec<char> = text.chars().collect();
        let sounds: Vec<Vec<&'static str>> = chars.iter().map(|c| readings(*c)).collect();
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        while i < chars.len() {
            // The longest word that is here exactly or with one homophone wrong; exact wins a tie.
            let mut best: Option<(usize, usize, usize)> = None; // (len, differ, word)
            for wi in sounds[i].iter().filter_map(|s| self.by_sound.get(s)).flatten() {
                let w = &self.words[*wi];
                let n = w.chars.len();
                let Some(window) = chars.get(i..i + n) else { continue };
                let differ = window.iter().zip(&w.chars).filter(|(a, b)| a != b).count();
                let alike = (0..n).all(|k| sounds[i + k].iter().any(|r| w.sounds[k].contains(r)));
                if differ > 1 || !alike || (differ == 1 && self.literal.contains(&window.iter().collect::<String>())) {
                    continue;
                }
                if best.is_none_or(|(bn, bd, _)| n > bn || (n == bn && differ < bd)) {
                    best = Some((n, differ, *wi));
                }
            }
            match best {
                Some((n, _, wi)) => {
                    out.extend(&self.words[wi].chars);
                    i += n;
                }
                None => {
                    out.push(chars[i]);
                    i += 1;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Homophones;

    fn h() -> Homophones {
        Homophones::new(["保险杠", "前保险杠", "翼子板", "后备箱", "划痕", "异响", "车门", "后门", "挡风玻璃"])
    }

    #[test]
    fn one_wrong_character_of_the_same_sound_is_repaired() {
        let h = h();
        assert_eq!(h.repair("前保险扛蹭了"), "前保险杠蹭了");
        assert_eq!(h.repair("左前翼子版有画痕"), "左前翼子板有画痕");
        assert_eq!(h.repair("后被箱盖"), "后备箱盖");
        assert_eq!(h.repair("前挡风玻离裂了"), "前挡风玻璃裂了");
    }

    #[test]
    fn words_sentences_and_other_sounds_stay() {
        let h = h();
        // Two-character words are never repaired towards (一想 is not 异响, 司机 not 死机).
        assert_eq!(h.repair("我一想就来了"), "我一想就来了");
        // Two characters differ.
        assert_eq!(h.repair("当风玻离"), "当风玻离");
        // Different sound (bang vs gang).
        assert_eq!(h.repair("保险帮"), "保险帮");
        assert_eq!(h.repair("右后门有划痕, rear door"), "右后门有划痕, rear door");
        assert_eq!(h.repair(""), "");
    }
}
