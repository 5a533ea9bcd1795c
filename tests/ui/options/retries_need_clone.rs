use concurrency_runtime::io_task;

struct Connection;

#[io_task(retries = 3)]
fn send(connection: Connection, payload: Vec<u8>) -> usize {
    let _ = connection;
    payload.len()
}

fn main() {
    let _ = send(Connection, vec![1]);
}
