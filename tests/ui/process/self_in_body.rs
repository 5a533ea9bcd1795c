use concurrency_runtime::cpu_task;

struct Parser;

impl Parser {
    fn helper(n: u64) -> u64 {
        n + 1
    }

    #[cpu_task(process)]
    fn parse(n: u64) -> u64 {
        Self::helper(n)
    }
}

fn main() {
    let _ = Parser::parse(1).run();
}
