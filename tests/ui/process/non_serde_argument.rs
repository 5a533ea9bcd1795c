use concurrency_runtime::cpu_task;

struct Image {
    pixels: Vec<u8>,
}

#[cpu_task(process)]
fn blur(image: Image) -> usize {
    image.pixels.len()
}

fn main() {}
